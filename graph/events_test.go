package graph_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/internal/apitest"
	"github.com/prybar/prybar/internal/retention"
	"github.com/prybar/prybar/internal/store"
)

// touch commits n separate changes (one event each) and returns the ids touched.
func touch(t testing.TB, st *store.Store, siteID, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		err := st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
			return tx.Site.UpdateOneID(siteID).SetDescription(fmt.Sprintf("change %d", i)).Exec(ctx)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func newSite(t testing.TB, st *store.Store, name string) int {
	t.Helper()
	var id int
	err := st.Tx(context.Background(), func(ctx context.Context, tx *ent.Tx) error {
		s, err := tx.Site.Create().SetName(name).Save(ctx)
		if err == nil {
			id = s.ID
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func subscribe(t testing.TB, url string, after int) *apitest.Subscription {
	t.Helper()
	sub, err := apitest.Subscribe(context.Background(), url, apitest.EventsSubscription, map[string]any{"after": after})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	t.Cleanup(sub.Close)
	return sub
}

// resumeScenario: a live client sees a commit within 1 s; a client that disconnects while 100
// changes commit gets exactly those 100, in order, when it resubscribes from its last seq. The
// writer and the subscriber may be different replicas.
func resumeScenario(t *testing.T, writer *store.Store, readerURL string) {
	siteID := newSite(t, writer, "resume")
	sub := subscribe(t, readerURL, 0)
	last := 0
	for { // drain the backlog (the site creation)
		ev, err := sub.NextEvent(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		last = ev.Seq
		if ev.Kind == "site.created" && ev.ObjectID == fmt.Sprint(siteID) {
			break
		}
	}
	// Live delivery.
	for i := 0; i < 5; i++ {
		start := time.Now()
		touch(t, writer, siteID, 1)
		ev, err := sub.NextEvent(time.Second)
		if err != nil {
			t.Fatalf("live event: %v", err)
		}
		if ev.Seq != last+1 || ev.Kind != "site.updated" {
			t.Fatalf("live event = %+v, want seq %d site.updated", ev, last+1)
		}
		last = ev.Seq
		t.Logf("live latency %s", time.Since(start))
	}
	sub.Close()
	touch(t, writer, siteID, 100)
	sub2 := subscribe(t, readerURL, last)
	for i := 1; i <= 100; i++ {
		ev, err := sub2.NextEvent(5 * time.Second)
		if err != nil {
			t.Fatalf("event %d of 100: %v", i, err)
		}
		if ev.Seq != last+i || ev.ObjectID != fmt.Sprint(siteID) {
			t.Fatalf("event %d = %+v, want seq %d", i, ev, last+i)
		}
	}
	if ev, err := sub2.NextEvent(300 * time.Millisecond); err == nil {
		t.Fatalf("extra event after the 100: %+v", ev)
	}
}

func TestSubscriptionResume(t *testing.T) {
	apitest.ForEachDB(t, func(t *testing.T, b apitest.Backend) {
		st := apitest.Open(t, apitest.DSN(t, b))
		srv := apitest.Serve(t, st)
		resumeScenario(t, st, srv.URL)
	})
}

// Two replicas on one PostgreSQL database: events committed through one reach subscribers of the
// other (LISTEN/NOTIFY, then read from the table).
func TestSubscriptionAcrossReplicas(t *testing.T) {
	dsn := apitest.DSN(t, apitest.Postgres)
	a := apitest.Open(t, dsn)
	b := apitest.Open(t, dsn)
	srvB := apitest.Serve(t, b)
	resumeScenario(t, a, srvB.URL)
}

// Filters narrow the stream by kind and by machine.
func TestSubscriptionFilter(t *testing.T) {
	apitest.ForEachDB(t, func(t *testing.T, b apitest.Backend) { subscriptionFilter(t, b) })
}

func subscriptionFilter(t *testing.T, b apitest.Backend) {
	st := apitest.Open(t, apitest.DSN(t, b))
	fleet(t, st, 3)
	srv := apitest.Serve(t, st)
	ctx := context.Background()
	ms := st.Client.Machine.Query().Order(ent.Asc("id")).AllX(ctx)
	sub, err := apitest.Subscribe(ctx, srv.URL, apitest.EventsSubscription, map[string]any{
		"after": 0, "filter": map[string]any{"kinds": []string{"nic.created", "machine.updated"}, "machineIDs": []string{fmt.Sprint(ms[1].ID)}}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for i := 0; i < 2; i++ { // the two NICs of machine 1 from the fixture
		ev, err := sub.NextEvent(2 * time.Second)
		if err != nil || ev.Kind != "nic.created" || ev.MachineID != fmt.Sprint(ms[1].ID) {
			t.Fatalf("backlog event %d = %+v, %v", i, ev, err)
		}
	}
	for _, m := range ms {
		if err := st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error { return tx.Machine.UpdateOne(m).SetSerial("new").Exec(ctx) }); err != nil {
			t.Fatal(err)
		}
	}
	ev, err := sub.NextEvent(time.Second)
	if err != nil || ev.Kind != "machine.updated" || ev.ObjectID != fmt.Sprint(ms[1].ID) {
		t.Fatalf("live event = %+v, %v", ev, err)
	}
	if ev, err := sub.NextEvent(300 * time.Millisecond); err == nil {
		t.Fatalf("unfiltered event leaked: %+v", ev)
	}
}

// On PostgreSQL sequence values are not handed out in commit order. With 8 concurrent writers and
// a subscriber that keeps disconnecting and resuming, every event still arrives exactly once and in
// seq order.
func TestConcurrentWritersResumingSubscriber(t *testing.T) {
	apitest.ForEachDB(t, func(t *testing.T, b apitest.Backend) {
		st := apitest.Open(t, apitest.DSN(t, b))
		srv := apitest.Serve(t, st)
		const writers, perWriter = 8, 40
		sites := make([]int, writers)
		for w := range sites {
			sites[w] = newSite(t, st, fmt.Sprintf("w%d", w))
		}
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < perWriter; i++ {
					// Vary transaction length so commits interleave with allocation order.
					err := st.Tx(context.Background(), func(ctx context.Context, tx *ent.Tx) error {
						if err := tx.Site.UpdateOneID(sites[w]).SetDescription(fmt.Sprint(i)).Exec(ctx); err != nil {
							return err
						}
						time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
						return tx.Site.UpdateOneID(sites[w]).SetLocation(fmt.Sprint(i)).Exec(ctx)
					})
					if err != nil {
						errs <- err
						return
					}
				}
			}(w)
		}
		want := writers * (1 + 2*perWriter)
		got := map[int]bool{}
		perSite := map[string]int{}
		last := 0
		deadline := time.Now().Add(60 * time.Second)
		reconnects := 0
		for len(got) < want && time.Now().Before(deadline) {
			sub, err := apitest.Subscribe(context.Background(), srv.URL, apitest.EventsSubscription, map[string]any{"after": last})
			if err != nil {
				t.Fatal(err)
			}
			reconnects++
			take := 1 + rand.IntN(40)
			for i := 0; i < take && len(got) < want; i++ {
				ev, err := sub.NextEvent(5 * time.Second)
				if err != nil {
					break
				}
				if ev.Seq <= last {
					t.Fatalf("seq went back or repeated: %d after %d", ev.Seq, last)
				}
				if ev.Seq != last+1 {
					t.Fatalf("gap: seq %d after %d", ev.Seq, last)
				}
				if got[ev.Seq] {
					t.Fatalf("duplicate seq %d", ev.Seq)
				}
				got[ev.Seq] = true
				perSite[ev.ObjectID]++
				last = ev.Seq
			}
			sub.Close()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if len(got) != want {
			t.Fatalf("received %d events, want %d", len(got), want)
		}
		for _, id := range sites {
			if perSite[fmt.Sprint(id)] != 1+2*perWriter {
				t.Errorf("site %d: %d events, want %d", id, perSite[fmt.Sprint(id)], 1+2*perWriter)
			}
		}
		t.Logf("%d events over %d reconnects", len(got), reconnects)
	})
}

// Resuming (query or subscription) from a seq that retention pruned is a typed RESYNC_REQUIRED
// error naming the oldest kept seq, never a silent gap; resuming from the oldest kept works.
func TestResumeFromPrunedSeq(t *testing.T) {
	apitest.ForEachDB(t, func(t *testing.T, b apitest.Backend) {
		st := apitest.Open(t, apitest.DSN(t, b))
		srv := apitest.Serve(t, st)
		siteID := newSite(t, st, "pruned")
		touch(t, st, siteID, 9) // seq 1..10
		opts := retention.Options{EventMaxCount: 4, EventMaxAge: -1, RunMaxAge: -1, RunMaxCount: -1}
		if _, err := retention.Prune(context.Background(), st, opts, time.Now()); err != nil {
			t.Fatal(err)
		}
		const q = `query($after: Int) { events(after: $after) { lastSeq events { seq } } }`
		resp, err := srv.Do(q, map[string]any{"after": 5})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Errors) != 1 || resp.Errors[0].Extensions["code"] != "RESYNC_REQUIRED" || resp.Errors[0].Extensions["oldestSeq"] != float64(7) {
			t.Fatalf("events(after: 5) after pruning through 6: %+v, want RESYNC_REQUIRED with oldestSeq 7", resp.Errors)
		}
		var page struct {
			Events struct {
				Events []struct{ Seq int }
			}
		}
		srv.Query(t, q, map[string]any{"after": 6}, &page)
		if n := len(page.Events.Events); n != 4 || page.Events.Events[0].Seq != 7 {
			t.Fatalf("events(after: 6): %+v, want seq 7..10", page.Events.Events)
		}

		sub, err := apitest.Subscribe(context.Background(), srv.URL, apitest.EventsSubscription, map[string]any{"after": 5})
		if err == nil {
			_, err = sub.NextEvent(5 * time.Second)
			sub.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "RESYNC_REQUIRED") || !strings.Contains(err.Error(), "oldestSeq:7") {
			t.Fatalf("subscribe after 5: %v, want RESYNC_REQUIRED with oldestSeq 7", err)
		}
		live := subscribe(t, srv.URL, 6)
		for want := 7; want <= 10; want++ {
			ev, err := live.NextEvent(5 * time.Second)
			if err != nil || ev.Seq != want {
				t.Fatalf("subscribe after 6: got %+v %v, want seq %d", ev, err, want)
			}
		}
	})
}
