package main

// Real-process tests of ownership and fencing on PostgreSQL (issue 7, points 3 and 7a): several
// `prybar serve` processes on one throwaway cluster, killed, stopped (SIGSTOP) and terminated for
// real. They log the takeover and exit times they measure; under load these are pessimistic.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/bmc"
	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/ent/operation"
	"github.com/prybar/prybar/ent/role"
	entrun "github.com/prybar/prybar/ent/run"
	"github.com/prybar/prybar/internal/apitest"
	"github.com/prybar/prybar/internal/pgtest"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/internal/testenv"
	"github.com/prybar/prybar/provision/redfish/redfishsim"
	"github.com/prybar/prybar/scheduler/leader"
)

// pgCluster is a fresh PostgreSQL database, the secret key file the servers share, and a store the
// test reads (and seeds) the database through.
func pgCluster(t *testing.T) (dsn, key string, st *store.Store) {
	t.Helper()
	dsn = pgtest.New(t)
	key = filepath.Join(t.TempDir(), "prybar.key")
	st, err := openWithKey(context.Background(), dsn, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return dsn, key, st
}

// slowBMC is a Redfish simulator whose power transitions never finish: an operation that changes
// the power state polls it until its settle timeout (or until it is cancelled). waiting counts the
// requests the simulator is holding (being answered, or delayed by a Latency fault).
type slowBMC struct {
	*redfishsim.Simulator
	host    string
	port    int
	waiting atomic.Int64
}

func newSlowBMC(t *testing.T) *slowBMC {
	t.Helper()
	dir, err := redfishsim.FindMockup("public-rackmount1")
	testenv.Require(t, "Redfish mock-ups (../shared)", err)
	sim, err := redfishsim.New(redfishsim.Config{MockupDir: dir, Username: "admin", Password: "pw", PowerDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	b := &slowBMC{Simulator: sim}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.waiting.Add(1)
		defer b.waiting.Add(-1)
		sim.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close(); _ = sim.Close() })
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	b.host = host
	b.port, _ = strconv.Atoi(port)
	return b
}

// machineWithBMC creates a machine managed by the BMC at host:port.
func machineWithBMC(t *testing.T, st *store.Store, name, host string, port int) int {
	t.Helper()
	var id int
	err := st.Tx(context.Background(), func(ctx context.Context, tx *ent.Tx) error {
		m, err := tx.Machine.Create().SetName(name).Save(ctx)
		if err != nil {
			return err
		}
		id = m.ID
		return tx.BMC.Create().SetMachineID(m.ID).SetProtocol(bmc.ProtocolREDFISH).SetAddress(host).SetPort(port).
			SetScheme("http").SetUsername("admin").SetPassword("pw").Exec(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func resetsSent(sim *slowBMC) int {
	n := 0
	for _, op := range sim.Ops() {
		if op.ResetType != "" && op.Acted {
			n++
		}
	}
	return n
}

// powerOffRunning starts a power-off through p and waits until the server has sent it and is
// polling the BMC for "Off" (which never comes).
func powerOffRunning(t *testing.T, p *proc, st *store.Store, sim *slowBMC, machineID int) int {
	t.Helper()
	var res struct {
		PowerAction struct {
			Operation struct{ ID string }
			Errors    []struct{ Code, Message string }
		}
	}
	gql(t, p.URL, fmt.Sprintf(`mutation { powerAction(machineID: %d, action: OFF) { operation { id } errors { code message } } }`, machineID), &res)
	if len(res.PowerAction.Errors) > 0 {
		t.Fatalf("powerAction: %+v", res.PowerAction.Errors)
	}
	var opID int
	fmt.Sscan(res.PowerAction.Operation.ID, &opID)
	before := resetsSent(sim)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		op, err := st.Client.Operation.Get(context.Background(), opID)
		if err == nil && op.State == operation.StateRUNNING && resetsSent(sim) > before {
			return opID
		}
		if time.Now().After(deadline) {
			t.Fatalf("operation %d never reached the BMC (%v, %v)\n%s", opID, op, err, p.out)
		}
	}
}

func leaderOf(p *proc) bool {
	var s struct{ Annealer struct{ Leader bool } }
	resp, err := (&apitest.Client{URL: p.URL}).Do(`{ annealer { leader } }`, nil)
	if err != nil || resp.Decode(&s) != nil {
		return false
	}
	return s.Annealer.Leader
}

// oneLeader waits until exactly one of a and b leads and returns it first.
func oneLeader(t *testing.T, a, b *proc) (*proc, *proc) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		la, lb := leaderOf(a), leaderOf(b)
		if la != lb {
			if la {
				return a, b
			}
			return b, a
		}
		if time.Now().After(deadline) {
			t.Fatalf("no single leader: a=%t b=%t", la, lb)
		}
	}
}

// TestKilledServersOperationSettledOnRestart (point 3): SIGKILL `prybar serve` on PostgreSQL while
// an operation polls a BMC, restart it at once: the restarted server finds the operation's owner
// dead (its liveness lock is gone) and settles it ABANDONED within seconds. Before, replicas only
// settled operations older than twice the executor timeout, so it stayed RUNNING for minutes.
func TestKilledServersOperationSettledOnRestart(t *testing.T) {
	dsn, key, st := pgCluster(t)
	sim := newSlowBMC(t)
	m := machineWithBMC(t, st, "killed-op.test.example", sim.host, sim.port)
	args := []string{"--db", dsn, "--secret-key-file", key}
	a := startServeEnv(t, nil, args...)
	opID := powerOffRunning(t, a, st, sim, m)
	killed := time.Now()
	a.kill() // SIGKILL
	startServeEnv(t, nil, args...)
	restarted := time.Since(killed)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		op := st.Client.Operation.GetX(context.Background(), opID)
		if op.State == operation.StateABANDONED {
			t.Logf("operation settled %s after the SIGKILL (the new server was up after %s): %q",
				time.Since(killed).Round(time.Millisecond), restarted.Round(time.Millisecond), op.Message)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("operation still %s 30 s after its server was killed and restarted", op.State)
		}
	}
	if n := resetsSent(sim); n != 1 {
		t.Errorf("%d power actions reached the BMC, want 1 (settling never re-runs an operation)", n)
	}
}

// TestSIGTERMCancelsOperationAndHandsOver: two replicas; the leader runs an operation whose BMC has
// stopped answering (every request hangs a minute). SIGTERM to the leader: it exits within
// seconds, records the operation ABANDONED with the shutdown reason, and releases the scheduler
// lock at once, so the other replica leads about one sweep later.
func TestSIGTERMCancelsOperationAndHandsOver(t *testing.T) {
	dsn, key, st := pgCluster(t)
	sim := newSlowBMC(t)
	m := machineWithBMC(t, st, "sigterm-op.test.example", sim.host, sim.port)
	args := []string{"--db", dsn, "--secret-key-file", key}
	a := startServeEnv(t, nil, args...)
	b := startServeEnv(t, nil, args...)
	lead, follower := oneLeader(t, a, b)
	opID := powerOffRunning(t, lead, st, sim, m)
	sim.SetFaults(redfishsim.Faults{Latency: time.Minute}) // the BMC goes silent mid-poll
	for deadline := time.Now().Add(10 * time.Second); sim.waiting.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the operation stopped polling the BMC")
		}
	}
	exited := make(chan time.Duration, 1)
	took := make(chan time.Duration, 1)
	start := time.Now()
	if err := lead.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	go func() {
		for !leaderOf(follower) && time.Since(start) < 30*time.Second {
			time.Sleep(20 * time.Millisecond)
		}
		took <- time.Since(start)
	}()
	go func() { _ = lead.cmd.Wait(); exited <- time.Since(start) }()
	var exit, takeover time.Duration
	select {
	case exit = <-exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("the leader did not exit within 30 s of SIGTERM (it waits for the operation polling a silent BMC)\n%s", lead.out)
	}
	takeover = <-took
	if !leaderOf(follower) {
		t.Fatalf("the other replica did not take over within 30 s of the SIGTERM")
	}
	op := st.Client.Operation.GetX(context.Background(), opID)
	if op.State != operation.StateABANDONED || !strings.Contains(op.Message, "cancelled: the server shut down") {
		t.Errorf("operation %s %q, want ABANDONED with the shutdown reason", op.State, op.Message)
	}
	t.Logf("SIGTERM → exit %s; SIGTERM → the other replica leads %s", exit.Round(time.Millisecond), takeover.Round(time.Millisecond))
	for _, l := range strings.Split(lead.out.String(), "\n") {
		if strings.Contains(l, "shutdown") || strings.Contains(l, "operation") {
			t.Log(l)
		}
	}
	if exit > 10*time.Second {
		t.Errorf("exit took %s: the shutdown waited for the BMC", exit)
	}
}

// terminateLockBackend ends the PostgreSQL backend holding the scheduler lock (a partition, or an
// operator's pg_terminate_backend).
func terminateLockBackend(t *testing.T, st *store.Store) {
	t.Helper()
	var n int
	err := st.DB.QueryRowContext(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND classid = $1 AND objid = $2 AND objsubid = 1`,
		uint32(leader.Key>>32), uint32(leader.Key&0xffffffff)).Scan(&n)
	if err != nil || n != 1 {
		t.Fatalf("terminate the lock's backend: %d terminated, %v", n, err)
	}
}

// TestPauseAndDropRealProcesses (point 7a): two `prybar serve` on PostgreSQL. The leader claims
// non-idempotent test runs (each appends one line, its effect, to a shared file after a delay);
// while they wait it is SIGSTOPped and its lock connection is terminated; the follower takes over,
// recovers and completes every node-role. Then the old leader gets SIGCONT: none of its abandoned
// runs may apply its effect or record a completion. Every node-role's effect happens exactly once,
// by a run of the new leader, under a higher leader epoch.
func TestPauseAndDropRealProcesses(t *testing.T) {
	dsn, key, st := pgCluster(t)
	ctx := context.Background()
	effects := filepath.Join(t.TempDir(), "effects")
	const machines = 16
	env := []string{"PRYBAR_TEST_EFFECTS=" + effects, "PRYBAR_CONCURRENCY=32"}
	args := []string{"--db", dsn, "--secret-key-file", key}
	a := startServeEnv(t, env, args...)
	b := startServeEnv(t, env, args...)
	runCLI(t, "fixtures", "generate", "--machines", fmt.Sprint(machines), "--db", dsn, "--secret-key-file", key)
	lead, follower := oneLeader(t, a, b)
	var who struct{ Annealer struct{ Owner string } }
	gql(t, lead.URL, `{ annealer { owner } }`, &who)
	oldOwner := who.Annealer.Owner

	var sys struct {
		Deployments struct {
			Edges []struct{ Node struct{ ID string } }
		}
	}
	gql(t, lead.URL, `{ deployments(where: {name: "system"}) { edges { node { id } } } }`, &sys)
	depID := sys.Deployments.Edges[0].Node.ID
	ids, err := st.Client.Machine.Query().IDs(ctx)
	if err != nil || len(ids) != machines {
		t.Fatalf("%d machines (%v)", len(ids), err)
	}
	for _, id := range ids {
		gql(t, lead.URL, fmt.Sprintf(`mutation { updateMachine(id: %d, input: {alive: true}) { errors { code } } }`, id), nil)
		gql(t, lead.URL, fmt.Sprintf(`mutation { bindRole(machineID: %d, role: "test-step") { errors { code message } } }`, id), nil)
	}
	for path, value := range map[string]string{"/delay": `"3s"`, "/effect": `"reboot"`} {
		gql(t, lead.URL, fmt.Sprintf(`mutation { setAttribute(deploymentID: %s, role: "test-step", path: "%s", value: %s) { errors { code message } } }`, depID, path, value), nil)
	}
	gql(t, lead.URL, fmt.Sprintf(`mutation { commitDeployment(id: %s) { errors { code message } } }`, depID), nil)
	running := func(owner string) int {
		n, err := st.Client.Run.Query().Where(entrun.Owner(owner), entrun.StatusEQ(entrun.StatusRUNNING), entrun.Executor("test")).Count(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for deadline := time.Now().Add(30 * time.Second); running(oldOwner) < machines; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the leader started %d of %d runs", running(oldOwner), machines)
		}
	}
	// The leader stalls with every run waiting before its effect; its lock connection is dropped.
	if err := lead.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lead.cmd.Process.Signal(syscall.SIGCONT) })
	terminateLockBackend(t, st)
	dropped := time.Now()
	for !leaderOf(follower) {
		if time.Since(dropped) > 20*time.Second {
			t.Fatal("the follower did not take over within 20 s of the lock's loss")
		}
		time.Sleep(20 * time.Millisecond)
	}
	takeover := time.Since(dropped)
	testStep := noderole.HasRoleWith(role.Name("test-step"))
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		n, err := st.Client.NodeRole.Query().Where(testStep, noderole.StateEQ(noderole.StateACTIVE)).Count(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == machines {
			break
		}
		if bad, _ := st.Client.NodeRole.Query().Where(testStep, noderole.StateEQ(noderole.StateERROR)).All(ctx); len(bad) > 0 {
			t.Fatalf("node-role %d ended in ERROR: %s", bad[0].ID, bad[0].Status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d node-roles ACTIVE a minute after the takeover\n%s", n, machines, follower.out)
		}
	}
	settled := time.Since(dropped)
	// The old leader resumes; wait until it has nothing in flight (each abandoned run has met its
	// fence by then: at the effect, or at the completion).
	if err := lead.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var s struct{ Annealer struct{ RunsInFlight int } }
		resp, err := (&apitest.Client{URL: lead.URL}).Do(`{ annealer { runsInFlight } }`, nil)
		if err == nil && resp.Decode(&s) == nil && s.Annealer.RunsInFlight == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the resumed leader still has runs in flight (%v)\n%s", err, lead.out)
		}
	}

	data, _ := os.ReadFile(effects)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	perNR := map[int]int{}
	byRun := map[int]bool{}
	for _, l := range lines {
		var nr, runID int
		if _, err := fmt.Sscan(l, &nr, &runID); err != nil {
			t.Fatalf("effects line %q: %v", l, err)
		}
		perNR[nr]++
		byRun[runID] = true
	}
	nrs, err := st.Client.NodeRole.Query().Where(testStep).WithRuns().All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var oldEpoch, newEpoch int
	for _, nr := range nrs {
		if perNR[nr.ID] != 1 {
			t.Errorf("node-role %d: effect applied %d times", nr.ID, perNR[nr.ID])
		}
		for _, r := range nr.Edges.Runs {
			if r.Owner == oldOwner {
				oldEpoch = r.LeaderEpoch
				if r.Status != entrun.StatusABANDONED {
					t.Errorf("run %d of the paused leader is %s, want ABANDONED (it recorded a completion)", r.ID, r.Status)
				}
				if byRun[r.ID] {
					t.Errorf("run %d of the paused leader applied its effect after it resumed", r.ID)
				}
			} else if r.Status == entrun.StatusSUCCEEDED {
				newEpoch = r.LeaderEpoch
			}
		}
	}
	if len(lines) != machines || oldEpoch == 0 || newEpoch <= oldEpoch {
		t.Errorf("%d effects for %d node-roles; leader epochs: paused leader %d, new leader %d (want one effect each and a higher epoch)",
			len(lines), machines, oldEpoch, newEpoch)
	}
	t.Logf("takeover %s after the lock was dropped; all %d node-roles ACTIVE after %s; epochs %d → %d; %d effects, none by the resumed leader",
		takeover.Round(time.Millisecond), machines, settled.Round(time.Millisecond), oldEpoch, newEpoch, len(lines))
}
