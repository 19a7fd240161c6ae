package leader_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/prybar/prybar/internal/pgtest"
	"github.com/prybar/prybar/scheduler/leader"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// Every acquisition of the lock gets a higher epoch, across electors (processes); the holder's
// Check passes, and a deposed holder's Check fails.
func TestEpochIncreasesOnEveryAcquisition(t *testing.T) {
	dsn := pgtest.New(t)
	ctx := context.Background()
	a, b := leader.New(dsn), leader.New(dsn)
	if err := a.IsLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.IsLeader(ctx); !errors.Is(err, leader.ErrNotLeader) {
		t.Fatalf("b while a leads: %v, want ErrNotLeader", err)
	}
	e1 := a.Epoch()
	if e1 < 1 || a.Check(ctx) != nil {
		t.Fatalf("a leads with epoch %d, check %v", e1, a.Check(ctx))
	}
	a.Resign()
	if err := a.IsLeader(ctx); err == nil {
		t.Fatal("a leads again after resigning")
	}
	if err := b.IsLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if e2 := b.Epoch(); e2 != e1+1 {
		t.Fatalf("b's epoch %d, want %d", e2, e1+1)
	}
	if err := a.Check(ctx); err == nil {
		t.Fatal("the resigned elector passes its fence")
	}
	// A different key has its own epochs.
	c := leader.New(dsn).WithKey(42)
	if err := c.IsLeader(ctx); err != nil || c.Epoch() != 1 {
		t.Fatalf("other key: %v, epoch %d", err, c.Epoch())
	}
	c.Resign()
	b.Resign()
}

// An instance's liveness lock is visible to other sessions while it lives and gone once it closes.
func TestInstanceLiveness(t *testing.T) {
	dsn := pgtest.New(t)
	ctx := context.Background()
	i1, err := leader.Register(ctx, dsn, "one")
	if err != nil {
		t.Fatal(err)
	}
	i2, err := leader.Register(ctx, dsn, "two")
	if err != nil {
		t.Fatal(err)
	}
	defer i2.Close()
	if i2.ID() <= i1.ID() {
		t.Fatalf("instance numbers %d then %d, want increasing", i1.ID(), i2.ID())
	}
	live := func() map[int64]bool {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, leader.LiveInstancesQuery, int64(leader.InstanceClass))
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[int64]bool{}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			out[id] = true
		}
		return out
	}
	if l := live(); !l[i1.ID()] || !l[i2.ID()] {
		t.Fatalf("live %v, want %d and %d", l, i1.ID(), i2.ID())
	}
	if err := i1.Check(ctx); err != nil {
		t.Fatal(err)
	}
	i1.Close()
	if l := live(); l[i1.ID()] || !l[i2.ID()] {
		t.Fatalf("after closing %d: live %v", i1.ID(), l)
	}
	if err := i1.Check(ctx); err == nil {
		t.Fatal("a closed instance passes its check")
	}
}

// A deposed leader that stalled inside a transaction holding the epoch row (as the annealer's
// claim and completion transactions do, FOR SHARE) must not block the takeover: the new leader's
// bump waits BumpGrace, then ends the stalled backend, and its transaction never commits. Without
// it the follower could not lead until the stalled process resumed (a SIGSTOPped leader: never).
func TestTakeoverEndsAStalledLeadersTransaction(t *testing.T) {
	dsn := pgtest.New(t)
	ctx := context.Background()
	a, b := leader.New(dsn), leader.New(dsn)
	if err := a.IsLeader(ctx); err != nil {
		t.Fatal(err)
	}
	stalled, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close(ctx)
	tx, err := stalled.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var e int64
	if err := tx.QueryRow(ctx, leader.EpochForShare, leader.Key).Scan(&e); err != nil || e != a.Epoch() {
		t.Fatalf("epoch %d (%v), want %d", e, err, a.Epoch())
	}
	a.Resign() // the lock is gone; the stalled transaction still holds the row
	start := time.Now()
	if err := b.IsLeader(ctx); err != nil {
		t.Fatalf("the follower cannot lead while a stalled transaction holds the epoch row: %v", err)
	}
	defer b.Resign()
	t.Logf("took over in %s", time.Since(start).Round(time.Millisecond))
	if b.Epoch() != e+1 {
		t.Errorf("new epoch %d, want %d", b.Epoch(), e+1)
	}
	if err := tx.Commit(ctx); err == nil {
		t.Error("the stalled leader's transaction committed after the takeover")
	}
}
