package agentapi_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/provision/agentapi"
)

// Two boots of one machine, from their events: each boot's steps in order of their starts, the
// trace from the agent's events, newest boot first.
func TestTimeline(t *testing.T) {
	e := newEnv(t)
	var id int
	e.tx(t, func(ctx context.Context, tx *ent.Tx) error {
		m, err := tx.Machine.Create().SetName("tl.lab.example").Save(ctx)
		id = m.ID
		return err
	})
	t0 := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	at := func(s float64) string {
		return t0.Add(time.Duration(s * float64(time.Second))).Format(time.RFC3339Nano)
	}
	evs := []struct {
		kind string
		ch   map[string]any
	}{
		{"lease.offered", map[string]any{"start": at(0)}},
		{"boot.http", map[string]any{"what": "script", "status": 200, "start": at(2.3), "duration_ms": 3}},
		{"boot.http", map[string]any{"what": "asset", "asset": "discovery/vmlinuz", "status": 200, "start": at(2.4), "duration_ms": 200}},
		{"boot.http", map[string]any{"what": "asset", "asset": "discovery/initrd", "status": 200, "start": at(2.6), "duration_ms": 150}},
		{"lease.bound", map[string]any{"start": at(5.5)}},
		{"agent.registered", map[string]any{"trace": "t1", "step": "agent check-in", "start": at(6)}},
		{"agent.task.start", map[string]any{"trace": "t1", "step": "task x start", "start": at(7)}},
		{"agent.task.end", map[string]any{"trace": "t1", "step": "task x end", "state": "DONE", "start": at(9), "duration_ms": 2000}},
		{"lease.offered", map[string]any{"start": at(100)}},
		{"boot.http", map[string]any{"what": "script", "status": 200, "start": at(102)}},
		{"lease.offered", map[string]any{"start": at(150)}},
		{"boot.http", map[string]any{"what": "script", "status": 200, "start": at(152)}},
		{"agent.registered", map[string]any{"trace": "t2", "step": "agent check-in", "start": at(156)}},
	}
	// Recorded out of order (events are written when a transfer ends): the timeline sorts.
	for _, i := range []int{0, 1, 3, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12} {
		ev := evs[i]
		e.tx(t, func(ctx context.Context, tx *ent.Tx) error {
			return events.Emit(events.WithActor(ctx, "test"), ev.kind, "machine", id, &id, ev.ch)
		})
	}
	boots, err := agentapi.Timeline(context.Background(), e.st.Client, id, 5)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range boots {
		var steps []string
		for _, s := range b.Steps {
			steps = append(steps, s.What)
		}
		got = append(got, b.Trace+": "+strings.Join(steps, ", ")+" ("+b.Start.Format("15:04:05.0")+", "+time.Duration(b.DurationMs()*int(time.Millisecond)).String()+")")
	}
	want := []string{
		"t2: lease.offered, script, agent check-in (04:02:30.0, 6s)",
		": lease.offered, script (04:01:40.0, 2s)",
		"t1: lease.offered, script, discovery/vmlinuz, discovery/initrd, lease.bound, agent check-in, task x start, task x end (04:00:00.0, 11s)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("timeline\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if one, _ := agentapi.Timeline(context.Background(), e.st.Client, id, 1); len(one) != 1 || one[0].Trace != "t2" {
		t.Errorf("last 1: %+v", one)
	}
}
