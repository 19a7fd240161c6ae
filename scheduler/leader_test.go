package scheduler

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/ent/run"
	"github.com/prybar/prybar/internal/pgtest"
	"github.com/prybar/prybar/scheduler/leader"
)

// killable is an elector a test can kill: once dead it never leads again and its lock
// connection is closed, as when the process dies.
type killable struct {
	*leader.Elector
	dead atomic.Bool
}

func (k *killable) IsLeader(ctx context.Context) error {
	if k.dead.Load() {
		return errors.New("dead")
	}
	return k.Elector.IsLeader(ctx)
}

func (k *killable) kill() { k.dead.Store(true); k.Elector.Resign() }

// TestTwoServersPostgres: two schedulers on one PostgreSQL database. Exactly one schedules while
// it lives; when it dies (its lock connection closes) the other takes over within 15 s, recovers
// what the dead one left in TRANSITION, and no node-role ever has two successful runs.
func TestTwoServersPostgres(t *testing.T) {
	dsn := pgtest.New(t)
	ctx := context.Background()
	ea, eb := &killable{Elector: leader.New(dsn)}, &killable{Elector: leader.New(dsn)}
	A := newEnv(t, dsn, Options{Elector: ea, Owner: "A", Concurrency: 4, Sweep: time.Second})
	B := newEnv(t, dsn, Options{Elector: eb, Owner: "B", Concurrency: 4, Sweep: time.Second})
	ms := A.machines(30, "pg")
	dep, _ := A.a.CreateDeployment(ctx, "pg", 0)
	if _, err := A.a.SetAttribute(ctx, AttrTarget{DeploymentID: dep.ID, Role: "network"}, "/delay", "60ms"); err != nil {
		t.Fatal(err)
	}
	if _, err := A.a.SetAttribute(ctx, AttrTarget{DeploymentID: dep.ID, Role: "os-install"}, "/delay", "60ms"); err != nil {
		t.Fatal(err)
	}
	ids := A.bindChain(dep.ID, ms)
	_ = ids
	A.start()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if st, _ := A.a.Status(ctx); st.Leader {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("A never became leader")
		}
	}
	B.start()
	if _, err := B.a.CommitDeployment(ctx, dep.ID); err != nil { // committed through B: A anneals
		t.Fatal(err)
	}
	countBy := func(owner string) int {
		n, err := A.st.Client.Run.Query().Where(run.Owner(owner)).Count(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Let A work through part of the deployment; B must not run anything meanwhile.
	for deadline := time.Now().Add(20 * time.Second); countBy("A") < 50; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("A is not annealing")
		}
	}
	if st, _ := B.a.Status(ctx); st.Leader || countBy("B") != 0 {
		t.Fatalf("B leads (%v) or ran %d runs while A lives", st.Leader, countBy("B"))
	}
	// Kill A: its lock connection closes, and it stops claiming.
	killed := time.Now()
	ea.kill()
	go A.a.Stop()
	for ; countBy("B") == 0; time.Sleep(20 * time.Millisecond) {
		if time.Since(killed) > 15*time.Second {
			t.Fatal("B did not take over within 15s")
		}
	}
	t.Logf("B took over %s after A died", time.Since(killed).Round(time.Millisecond))
	B.settle(30 * time.Second)
	nrs, err := A.st.Client.NodeRole.Query().WithRuns().All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	abandoned := 0
	for _, nr := range nrs {
		if nr.State != noderole.StateACTIVE {
			t.Errorf("node-role %d %s %s", nr.ID, nr.State, nr.Status)
		}
		ok := 0
		for _, r := range nr.Edges.Runs {
			switch r.Status {
			case run.StatusSUCCEEDED:
				ok++
			case run.StatusABANDONED:
				abandoned++
			default:
				t.Errorf("run %d of %d: %s", r.ID, nr.ID, r.Status)
			}
		}
		if ok != 1 {
			t.Errorf("node-role %d has %d successful runs", nr.ID, ok)
		}
	}
	t.Logf("runs: A %d, B %d, abandoned %d", countBy("A"), countBy("B"), abandoned)
}
