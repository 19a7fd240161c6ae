package events_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/internal/store"
)

func openSQLite(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "prybar.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func addSites(t *testing.T, st *store.Store, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := st.Tx(context.Background(), func(ctx context.Context, tx *ent.Tx) error {
			return tx.Site.Create().SetName(fmt.Sprintf("s%d", i)).Exec(ctx)
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// next reads n events from ch and checks they are seq from+1 … from+n, in order, no duplicates.
func expectSeqs(t *testing.T, ch <-chan *ent.Event, from int64, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("stream closed after seq %d", from+int64(i-1))
			}
			if e.Seq != from+int64(i) {
				t.Fatalf("got seq %d, want %d (lost, reordered or duplicated)", e.Seq, from+int64(i))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no event after seq %d within 10s", from+int64(i-1))
		}
	}
	select {
	case e := <-ch:
		t.Fatalf("unexpected extra event seq %d", e.Seq)
	case <-time.After(300 * time.Millisecond):
	}
}

// A subscriber that stops reading falls behind its bounded buffer; the others keep being served,
// and once it reads again it gets every event, in order, exactly once (replayed from the table).
func TestTailSlowSubscriberReplays(t *testing.T) {
	st := openSQLite(t)
	addSites(t, st, 0, 3) // seq 1..3 before anyone subscribes
	tail := events.NewTail(st.Client, st.Hub, nil)
	tail.Buffer = 4
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slow := tail.Subscribe(ctx, 1, events.Filter{})
	fast := tail.Subscribe(ctx, 0, events.Filter{})
	filtered := tail.Subscribe(ctx, 0, events.Filter{Kinds: []string{"rack.created"}})
	expectSeqs(t, fast, 0, 3)
	// 60 commits while slow reads nothing: its buffer (4) and the stream's channel overflow.
	addSites(t, st, 3, 60)
	expectSeqs(t, fast, 3, 60)
	if tail.Drops() == 0 {
		t.Fatal("the slow subscriber never fell behind the buffer: the test does not exercise the replay")
	}
	expectSeqs(t, slow, 1, 62)
	// Caught up, it is live again.
	addSites(t, st, 63, 2)
	expectSeqs(t, slow, 63, 2)
	expectSeqs(t, fast, 63, 2)
	select {
	case e := <-filtered:
		t.Fatalf("filtered subscriber got %s", e.Kind)
	default:
	}
}

// With many live subscribers each commit is read from the table once, not once per subscriber.
func TestTailReadsOncePerCommit(t *testing.T) {
	st := openSQLite(t)
	tail := events.NewTail(st.Client, st.Hub, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	subs := make([]<-chan *ent.Event, 50)
	for i := range subs {
		subs[i] = tail.Subscribe(ctx, 0, events.Filter{})
	}
	time.Sleep(200 * time.Millisecond) // let them join
	before := tail.Reads()
	addSites(t, st, 0, 5)
	for _, s := range subs {
		expectSeqsQuick(t, s, 0, 5)
	}
	if got := tail.Reads() - before; got > 10 {
		t.Fatalf("%d table reads for 5 commits and 50 subscribers; want one per wake-up", got)
	}
}

func expectSeqsQuick(t *testing.T, ch <-chan *ent.Event, from int64, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		select {
		case e := <-ch:
			if e.Seq != from+int64(i) {
				t.Fatalf("got seq %d, want %d", e.Seq, from+int64(i))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no event after seq %d", from+int64(i-1))
		}
	}
}
