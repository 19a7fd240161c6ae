package scheduler

import (
	"bufio"
	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prybar/prybar/ent/run"
	"github.com/prybar/prybar/internal/pgtest"
	"github.com/prybar/prybar/scheduler/executor"
	"github.com/prybar/prybar/scheduler/leader"
)

// stalled is the test executor behind a gate: its runs start, then stop before their effect until
// the gate opens — a leader paused mid-run (SIGSTOP, a long GC pause, a partition).
type stalled struct {
	*executor.Test
	gate    chan struct{}
	entered chan struct{}
}

func (s *stalled) Run(ctx context.Context, in executor.Input) (executor.Result, error) {
	s.entered <- struct{}{}
	<-s.gate // deliberately deaf to ctx: a paused process does not see its cancellation either
	return s.Test.Run(ctx, in)
}

// pausable is an elector whose leadership checks block while the gate is closed: with the runs
// gated too, the whole scheduler of the process is frozen, as under SIGSTOP.
type pausable struct {
	*leader.Elector
	gate atomic.Pointer[chan struct{}]
}

func (p *pausable) IsLeader(ctx context.Context) error {
	select {
	case <-*p.gate.Load():
	case <-ctx.Done():
		return ctx.Err()
	}
	return p.Elector.IsLeader(ctx)
}

// terminateLock ends the backend holding the scheduler's advisory lock, as a network partition or
// an operator's pg_terminate_backend would.
func terminateLock(t *testing.T, e *env) {
	t.Helper()
	var n int
	err := e.st.DB.QueryRowContext(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND classid = $1 AND objid = $2 AND objsubid = 1`,
		uint32(leader.Key>>32), uint32(leader.Key&0xffffffff)).Scan(&n)
	if err != nil || n != 1 {
		t.Fatalf("terminate the lock's backend: %d terminated, %v", n, err)
	}
}

func effectLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// TestFencePauseAndDrop: leader A claims non-idempotent runs that write an external effect and
// stalls before the effect; its lock connection is terminated; follower B takes over, recovers and
// completes the node-roles (one effect each). Then A resumes. A must apply no effect and record no
// completion: every node-role has exactly one effect, written by one of B's runs. Before fencing,
// A's resumed runs wrote their effects a second time.
func TestFencePauseAndDrop(t *testing.T) {
	dsn := pgtest.New(t)
	ctx := context.Background()
	gate := make(chan struct{})
	running := make(chan struct{}) // open while A is not paused
	close(running)
	pa := &pausable{Elector: leader.New(dsn)}
	pa.gate.Store(&running)
	A := newEnv(t, dsn, Options{Elector: pa, Owner: "A", Sweep: 200 * time.Millisecond})
	B := newEnv(t, dsn, Options{Elector: leader.New(dsn), Owner: "B", Sweep: 200 * time.Millisecond})
	const n = 8
	st := &stalled{Test: &executor.Test{EffectsFile: A.effects}, gate: gate, entered: make(chan struct{}, n)}
	A.a.Registry().Register(st)
	B.a.Registry().Register(&executor.Test{EffectsFile: A.effects})
	ms := A.machines(n, "fence")
	dep, _ := A.a.CreateDeployment(ctx, "fence", 0)
	if _, err := A.a.SetAttribute(ctx, AttrTarget{DeploymentID: dep.ID, Role: "test-step"}, "/effect", "reboot"); err != nil {
		t.Fatal(err)
	}
	if _, err := A.a.BindRoles(ctx, ms, "test-step", dep.ID); err != nil {
		t.Fatal(err)
	}
	A.start()
	if _, err := A.a.CommitDeployment(ctx, dep.ID); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		select {
		case <-st.entered:
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d of %d runs started on A", i, n)
		}
	}
	// A is paused with n runs in flight: its runs wait at the gate, its scheduler at the elector.
	// Drop its lock; B takes over.
	paused := make(chan struct{})
	pa.gate.Store(&paused)
	time.Sleep(500 * time.Millisecond) // A's claim loop is now blocked in IsLeader
	terminateLock(t, A)
	dropped := time.Now()
	B.start()
	B.settle(60 * time.Second)
	t.Logf("B completed the node-roles %s after A's lock was dropped", time.Since(dropped).Round(time.Millisecond))
	// A resumes.
	close(gate)
	close(paused)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		A.a.mu.Lock()
		left := A.a.inflight
		A.a.mu.Unlock()
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("A still has %d runs in flight", left)
		}
	}
	time.Sleep(300 * time.Millisecond) // a completion A might (wrongly) record would land now

	perNR := map[string]int{}
	for _, l := range effectLines(t, A.effects) {
		perNR[strings.Fields(l)[0]]++
	}
	if len(perNR) != n {
		t.Errorf("%d node-roles have an effect, want %d", len(perNR), n)
	}
	for nr, c := range perNR {
		if c != 1 {
			t.Errorf("node-role %s: effect applied %d times (the deposed leader acted)", nr, c)
		}
	}
	aRuns, err := A.st.Client.Run.Query().Where(run.Owner("A")).All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range aRuns {
		if r.Status != run.StatusABANDONED {
			t.Errorf("A's run %d is %s, want ABANDONED (a deposed leader records no completion)", r.ID, r.Status)
		}
	}
	if len(aRuns) != n {
		t.Errorf("A claimed %d runs, want %d", len(aRuns), n)
	}
}

// TestStopReleasesLeadershipAtOnce: stopping a leader that has a slow run in flight releases the
// lock at once, so a follower takes over in about one sweep — before, the stopping leader kept the
// lock while it drained (and in `prybar serve`, while an operation polled a slow BMC).
func TestStopReleasesLeadershipAtOnce(t *testing.T) {
	dsn := pgtest.New(t)
	ctx := context.Background()
	A := newEnv(t, dsn, Options{Elector: leader.New(dsn), Owner: "A", Sweep: 200 * time.Millisecond})
	B := newEnv(t, dsn, Options{Elector: leader.New(dsn), Owner: "B", Sweep: 200 * time.Millisecond})
	ms := A.machines(1, "slow")
	dep, _ := A.a.CreateDeployment(ctx, "slow", 0)
	if _, err := A.a.SetAttribute(ctx, AttrTarget{DeploymentID: dep.ID, Role: "test-step"}, "/delay", "60s"); err != nil {
		t.Fatal(err)
	}
	if _, err := A.a.BindRoles(ctx, ms, "test-step", dep.ID); err != nil {
		t.Fatal(err)
	}
	A.start()
	if _, err := A.a.CommitDeployment(ctx, dep.ID); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, _ := A.st.Client.Run.Query().Where(run.Owner("A"), run.StatusEQ(run.StatusRUNNING)).Count(ctx); c == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("A never started the slow run")
		}
	}
	B.start()
	stop := time.Now()
	go A.a.Stop()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if s, _ := B.a.Status(ctx); s.Leader {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("B did not take over within 30 s of A's stop (A keeps the lock while its slow run drains)")
		}
	}
	t.Logf("B leads %s after A was told to stop", time.Since(stop).Round(time.Millisecond))
}

// stale is an elector that, once frozen, answers IsLeader from memory without asking PostgreSQL:
// a process paused right after a successful check, which acts on that answer when it resumes.
type stale struct {
	*leader.Elector
	frozen atomic.Bool
}

func (s *stale) IsLeader(ctx context.Context) error {
	if s.frozen.Load() {
		return nil
	}
	return s.Elector.IsLeader(ctx)
}

// TestDeposedLeaderClaimsNothing: leader A's lock is dropped and B takes over (a newer epoch), but
// A still believes it leads — it stalled between its leadership check and its claim. Work
// committed now must all be done by B: A's claim transaction finds a newer epoch and claims
// nothing. Before epochs the claim had no fence: A claimed node-roles whose effects its fence then
// refused, B (whose recovery had already run) never saw them, and they stayed in TRANSITION.
func TestDeposedLeaderClaimsNothing(t *testing.T) {
	dsn := pgtest.New(t)
	ctx := context.Background()
	sa := &stale{Elector: leader.New(dsn)}
	A := newEnv(t, dsn, Options{Elector: sa, Owner: "A", Sweep: 100 * time.Millisecond})
	B := newEnv(t, dsn, Options{Elector: leader.New(dsn), Owner: "B", Sweep: 100 * time.Millisecond})
	A.a.Registry().Register(&executor.Test{EffectsFile: A.effects})
	B.a.Registry().Register(&executor.Test{EffectsFile: A.effects})
	const n = 8
	ms := A.machines(n, "deposed")
	dep, _ := A.a.CreateDeployment(ctx, "deposed", 0)
	if _, err := A.a.SetAttribute(ctx, AttrTarget{DeploymentID: dep.ID, Role: "test-step"}, "/effect", "reboot"); err != nil {
		t.Fatal(err)
	}
	if _, err := A.a.BindRoles(ctx, ms, "test-step", dep.ID); err != nil {
		t.Fatal(err)
	}
	A.start()
	leads := func(e *env) bool { s, _ := e.a.Status(ctx); return s.Leader }
	for deadline := time.Now().Add(10 * time.Second); !leads(A); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("A never led")
		}
	}
	epochA := sa.Epoch()
	sa.frozen.Store(true)
	terminateLock(t, A)
	B.start()
	for deadline := time.Now().Add(10 * time.Second); !leads(B); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("B did not take over")
		}
	}
	if _, err := A.a.CommitDeployment(ctx, dep.ID); err != nil { // wakes A's claim loop first
		t.Fatal(err)
	}
	B.settle(30 * time.Second)
	if c, err := A.st.Client.Run.Query().Where(run.Owner("A")).Count(ctx); err != nil || c != 0 {
		t.Errorf("the deposed leader claimed %d runs (%v), want 0", c, err)
	}
	perNR := map[string]int{}
	for _, l := range effectLines(t, A.effects) {
		perNR[strings.Fields(l)[0]]++
	}
	if len(perNR) != n {
		t.Errorf("%d node-roles have an effect, want %d", len(perNR), n)
	}
	for nr, c := range perNR {
		if c != 1 {
			t.Errorf("node-role %s: effect applied %d times", nr, c)
		}
	}
	runs, err := B.st.Client.Run.Query().Where(run.Owner("B")).All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		if int64(r.LeaderEpoch) <= epochA {
			t.Errorf("B's run %d has leader epoch %d, want more than A's %d", r.ID, r.LeaderEpoch, epochA)
		}
	}
}
