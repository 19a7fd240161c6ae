package retention_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/run"
	"github.com/prybar/prybar/internal/apitest"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/internal/retention"
	"github.com/prybar/prybar/internal/store"
)

// addSites writes n transactions, one event each (seq 1..n on a fresh database).
var siteN int

func addSites(t *testing.T, st *store.Store, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		siteN++
		err := st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
			return tx.Site.Create().SetName(fmt.Sprintf("s%d", siteN)).Exec(ctx)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func seqs(t *testing.T, st *store.Store) []int64 {
	t.Helper()
	evs, err := st.Client.Event.Query().Order(ent.Asc("seq")).All(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.Seq
	}
	return out
}

func wantRange(t *testing.T, got []int64, from, to int64) {
	t.Helper()
	if len(got) != int(to-from+1) || got[0] != from || got[len(got)-1] != to {
		t.Fatalf("kept seqs %v, want %d..%d", got, from, to)
	}
}

func TestPruneEventsByCount(t *testing.T) {
	apitest.ForEachDB(t, func(t *testing.T, b apitest.Backend) {
		st := apitest.Open(t, apitest.DSN(t, b))
		addSites(t, st, 10)
		res, err := retention.Prune(context.Background(), st, retention.Options{EventMaxCount: 4, EventMaxAge: -1, RunMaxAge: -1, RunMaxCount: -1}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if res.Events != 6 {
			t.Fatalf("deleted %d events, want 6", res.Events)
		}
		wantRange(t, seqs(t, st), 7, 10)
		// The next event continues the sequence.
		addSites(t, st, 1)
		wantRange(t, seqs(t, st), 7, 11)
	})
}

func TestPruneEventsByAgeKeepsNewest(t *testing.T) {
	apitest.ForEachDB(t, func(t *testing.T, b apitest.Backend) {
		st := apitest.Open(t, apitest.DSN(t, b))
		addSites(t, st, 8)
		ctx := context.Background()
		q := "UPDATE events SET time = ? WHERE seq <= 5"
		if st.Dialect == "postgres" {
			q = "UPDATE events SET time = $1 WHERE seq <= 5"
		}
		if _, err := st.DB.ExecContext(ctx, q, time.Now().Add(-72*time.Hour)); err != nil {
			t.Fatal(err)
		}
		opts := retention.Options{EventMaxAge: 24 * time.Hour, EventMaxCount: -1, RunMaxAge: -1, RunMaxCount: -1}
		if _, err := retention.Prune(ctx, st, opts, time.Now()); err != nil {
			t.Fatal(err)
		}
		wantRange(t, seqs(t, st), 6, 8)
		// Everything old: the newest event stays (it carries the seq counter).
		if _, err := retention.Prune(ctx, st, opts, time.Now().Add(100*time.Hour)); err != nil {
			t.Fatal(err)
		}
		wantRange(t, seqs(t, st), 8, 8)
	})
}

// Runs: the newest run of every node-role survives any rule, RUNNING runs are never pruned.
func TestPruneRunsKeepsLastPerNodeRole(t *testing.T) {
	apitest.ForEachDB(t, func(t *testing.T, b apitest.Backend) {
		st := apitest.Open(t, apitest.DSN(t, b))
		ctx := context.Background()
		var nr1, nr2 int
		var ids []int
		err := st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
			m := tx.Machine.Create().SetName("m1.example").SaveX(ctx)
			r := tx.Role.Create().SetName("r").SetExecutor("noop").SaveX(ctx)
			d := tx.Deployment.Create().SetName("d").SaveX(ctx)
			nr1 = tx.NodeRole.Create().SetMachine(m).SetRole(r).SetDeployment(d).SaveX(ctx).ID
			m2 := tx.Machine.Create().SetName("m2.example").SaveX(ctx)
			nr2 = tx.NodeRole.Create().SetMachine(m2).SetRole(r).SetDeployment(d).SaveX(ctx).ID
			old := time.Now().Add(-72 * time.Hour)
			for i := 0; i < 5; i++ {
				ids = append(ids, tx.Run.Create().SetNodeRoleID(nr1).SetExecutor("noop").SetStatus(run.StatusSUCCEEDED).SetStartedAt(old).SaveX(ctx).ID)
			}
			ids = append(ids, tx.Run.Create().SetNodeRoleID(nr2).SetExecutor("noop").SetStatus(run.StatusFAILED).SetStartedAt(old).SaveX(ctx).ID)
			ids = append(ids, tx.Run.Create().SetNodeRoleID(nr2).SetExecutor("noop").SetStatus(run.StatusRUNNING).SetStartedAt(old).SaveX(ctx).ID)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		kept := func() []int {
			got, err := st.Client.Run.Query().Order(ent.Asc("id")).IDs(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		// By count: the 3 newest stay; older ones go, except each node-role's last (ids[4] is
		// among the newest anyway).
		res, err := retention.Prune(ctx, st, retention.Options{RunMaxCount: 3, RunMaxAge: -1, EventMaxAge: -1, EventMaxCount: -1}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if got, want := kept(), ids[4:]; fmt.Sprint(got) != fmt.Sprint(want) || res.Runs != 4 {
			t.Fatalf("by count: kept %v (deleted %d), want %v", got, res.Runs, want)
		}
		// By age: all are old; nr1 keeps its last (ids[4]), nr2 its RUNNING last (ids[6]).
		if _, err := retention.Prune(ctx, st, retention.Options{RunMaxAge: time.Hour, RunMaxCount: -1, EventMaxAge: -1, EventMaxCount: -1}, time.Now()); err != nil {
			t.Fatal(err)
		}
		if got, want := kept(), []int{ids[4], ids[6]}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("by age: kept %v, want %v", got, want)
		}
	})
}

// A reader resuming before the oldest kept event gets a typed error naming the oldest seq; from
// the oldest kept (after = oldest-1) it reads on.
func TestResumeAfterPrune(t *testing.T) {
	apitest.ForEachDB(t, func(t *testing.T, b apitest.Backend) {
		st := apitest.Open(t, apitest.DSN(t, b))
		addSites(t, st, 10)
		ctx := context.Background()
		if _, err := retention.Prune(ctx, st, retention.Options{EventMaxCount: 4, EventMaxAge: -1, RunMaxAge: -1, RunMaxCount: -1}, time.Now()); err != nil {
			t.Fatal(err)
		}
		err := events.CheckResume(ctx, st.Client, 5)
		var rr *events.ResyncRequiredError
		if !errors.As(err, &rr) || rr.OldestSeq != 7 || rr.Extensions()["code"] != "RESYNC_REQUIRED" {
			t.Fatalf("resume from 5: %v, want resync required with oldest 7", err)
		}
		for _, after := range []int64{0, 6, 10} {
			if err := events.CheckResume(ctx, st.Client, after); err != nil {
				t.Fatalf("resume from %d: %v", after, err)
			}
		}
	})
}

// Start schedules the prune on a gocron job that runs at once (and then every Every); on
// PostgreSQL it is gated by its own leader election, which a single server wins.
func TestStartPrunesOnSchedule(t *testing.T) {
	apitest.ForEachDB(t, func(t *testing.T, b apitest.Backend) {
		st := apitest.Open(t, apitest.DSN(t, b))
		addSites(t, st, 6)
		stop, err := retention.Start(context.Background(), st, retention.Options{EventMaxCount: 2, Every: time.Hour}, apitest.Quiet())
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
		deadline := time.Now().Add(20 * time.Second)
		for {
			if got := seqs(t, st); len(got) == 2 && got[1] == got[0]+1 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 20s the scheduled prune kept %v, want the newest 2", seqs(t, st))
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// A malformed environment value is an error naming the variable, not a silent default.
func TestFlagsRejectBadEnv(t *testing.T) {
	t.Setenv("PRYBAR_EVENT_MAX_AGE", "a month")
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	o := retention.Flags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	_, err := retention.Start(context.Background(), nil, *o, nil)
	if err == nil || !strings.Contains(err.Error(), "PRYBAR_EVENT_MAX_AGE") {
		t.Fatalf("Start with PRYBAR_EVENT_MAX_AGE=%q: %v, want an error naming it", "a month", err)
	}
}
