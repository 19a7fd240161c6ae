package scheduler

import (
	"context"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/bmc"
	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/ent/run"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/redfish/redfishsim"
)

// offMockup copies a DMTF mock-up into a temporary folder with every system powered off, so a
// power-on has something to do.
func offMockup(t *testing.T, name string) string {
	t.Helper()
	src, err := redfishsim.FindMockup(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	dst := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command("cp", "-r", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy mock-up: %v\n%s", err, out)
	}
	sys, _ := filepath.Glob(filepath.Join(dst, "Systems", "*", "index.json"))
	for _, p := range sys {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b = []byte(strings.ReplaceAll(string(b), `"PowerState": "On"`, `"PowerState": "Off"`))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestBMCRecoveryAfterKill SIGKILLs a real `prybar serve` while a bmc-power-on run is in flight
// against the Redfish simulator (the power-on was sent; the server was polling for "On"), lets
// the machine reach On, and restarts the server. Recovery must rebuild the run's input from the
// database — with the machine's BMC and its password — ask the BMC, find the machine on, and
// complete the node-role ACTIVE without a second power-on. Before the fix the rebuilt input had no
// BMC, Applied failed and the node-role ended in ERROR.
func TestBMCRecoveryAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the prybar binary")
	}
	dir := t.TempDir()
	bin := prybarBinary(t, dir)
	db := filepath.Join(dir, "prybar.db")
	ctx := context.Background()

	const powerDelay = 4 * time.Second
	sim, err := redfishsim.New(redfishsim.Config{MockupDir: offMockup(t, "public-rackmount1"), Username: "admin",
		Password: "s3cret", PowerDelay: powerDelay})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() { srv.Close(); _ = sim.Close() })
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)

	e := newEnv(t, db, Options{})
	m := e.machines(1, "kill")
	if err := e.st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		return tx.BMC.Create().SetMachineID(m[0]).SetProtocol(bmc.ProtocolREDFISH).SetAddress(host).SetPort(p).
			SetScheme("http").SetUsername("admin").SetPassword("s3cret").Exec(ctx)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.a.BindRoles(ctx, m, "bmc-power-on", e.sys.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.a.CommitDeployment(ctx, e.sys.ID); err != nil {
		t.Fatal(err)
	}
	e.st.Close()

	watch, err := store.Open(ctx, db, store.Options{SkipMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	resets := func() int {
		n := 0
		for _, op := range sim.Ops() {
			if op.ResetType != "" && strings.Contains(op.Path, "/Systems/") {
				n++
			}
		}
		return n
	}
	serve := func() *exec.Cmd {
		cmd := exec.Command(bin, "serve", "--db", db, "--listen", "127.0.0.1:0", "--log-level", "warn")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	cmd := serve()
	deadline := time.Now().Add(30 * time.Second)
	for resets() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if resets() != 1 {
		_ = cmd.Process.Kill()
		t.Fatalf("the server sent %d power actions, want 1 before the kill", resets())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	inflight, err := watch.Client.Run.Query().Where(run.StatusEQ(run.StatusRUNNING), run.Executor("bmc")).Count(ctx)
	if err != nil || inflight != 1 {
		t.Fatalf("after the kill: %d bmc runs RUNNING (%v), want 1: the kill missed the run", inflight, err)
	}
	// The machine finishes powering on while no server runs.
	time.Sleep(powerDelay + 500*time.Millisecond)

	cmd = serve()
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	var nr *ent.NodeRole
	deadline = time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		nr, err = watch.Client.NodeRole.Query().Where(noderole.MachineID(m[0])).Only(ctx)
		if err == nil && (nr.State == noderole.StateACTIVE || nr.State == noderole.StateERROR) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if nr == nil || nr.State != noderole.StateACTIVE {
		t.Fatalf("after the restart the node-role is %v, want ACTIVE", nr)
	}
	if !strings.Contains(nr.Status, "verified") {
		t.Errorf("status %q: want completion by verification", nr.Status)
	}
	if n := resets(); n != 1 {
		t.Errorf("%d power actions reached the BMC, want exactly 1", n)
	}
}
