package scheduler

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/ent/role"
	"github.com/prybar/prybar/ent/run"
	"github.com/prybar/prybar/fixtures"
	"github.com/prybar/prybar/internal/store"
)

// prybarBinary builds ./cmd/prybar into dir (PRYBAR_TEST_BINARY names a prebuilt one instead).
func prybarBinary(t *testing.T, dir string) string {
	t.Helper()
	if p := os.Getenv("PRYBAR_TEST_BINARY"); p != "" {
		return p
	}
	bin := filepath.Join(dir, "prybar")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/prybar/prybar/cmd/prybar")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/prybar: %v\n%s", err, out)
	}
	return bin
}

// TestCrashSafety kills `prybar serve` with SIGKILL mid-anneal three times. The test roles are
// not idempotent and write an external effect; recovery must neither lose a node-role nor apply
// any effect twice (the test executor's Verifier decides from the effects file).
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the prybar binary")
	}
	began := time.Now()
	dir := t.TempDir()
	bin := prybarBinary(t, dir)
	t.Logf("binary ready in %s", time.Since(began).Round(time.Millisecond))
	db := filepath.Join(dir, "prybar.db")
	effects := filepath.Join(dir, "effects")
	ctx := context.Background()

	// The fleet and the bindings, written before any server runs.
	setup := time.Now()
	e := newEnv(t, db, Options{})
	f := fixtures.Generate(fixtures.GenerateOptions{Machines: 500, Seed: 7})
	for si := range f.Sites {
		for ri := range f.Sites[si].Racks {
			for mi := range f.Sites[si].Racks[ri].Machines {
				f.Sites[si].Racks[ri].Machines[mi].Alive = true
			}
		}
	}
	if _, err := fixtures.Load(ctx, e.st, "fleet", f); err != nil {
		t.Fatal(err)
	}
	ms, err := e.st.Client.Machine.Query().IDs(ctx)
	if err != nil || len(ms) != 500 {
		t.Fatalf("%d machines, %v", len(ms), err)
	}
	dep, err := e.a.CreateDeployment(ctx, "crash", 0)
	if err != nil {
		t.Fatal(err)
	}
	for role, eff := range map[string]string{"network": "net", "os-install": "os"} {
		for path, v := range map[string]any{"/delay": "25ms", "/hold": "25ms", "/effect": eff} {
			if _, err := e.a.SetAttribute(ctx, AttrTarget{DeploymentID: dep.ID, Role: role}, path, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.bindChain(dep.ID, ms)
	if _, err := e.a.CommitDeployment(ctx, dep.ID); err != nil {
		t.Fatal(err)
	}
	total, _ := e.st.Client.NodeRole.Query().Count(ctx)
	if total != 2000 {
		t.Fatalf("%d node-roles", total)
	}
	e.st.Close()
	t.Logf("fleet of 500 machines and %d node-roles set up in %s", total, time.Since(setup).Round(time.Millisecond))

	watch, err := store.Open(ctx, db, store.Options{SkipMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	active := func() int {
		n, err := watch.Client.NodeRole.Query().Where(noderole.StateEQ(noderole.StateACTIVE)).Count(ctx)
		if err != nil {
			t.Logf("count: %v", err)
		}
		return n
	}
	serve := func() *exec.Cmd {
		cmd := exec.Command(bin, "serve", "--db", db, "--listen", "127.0.0.1:0", "--log-level", "warn")
		cmd.Env = append(os.Environ(), "PRYBAR_TEST_EFFECTS="+effects, "PRYBAR_CONCURRENCY=16")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	deadline := time.Now().Add(75 * time.Second)
	kills := 0
	for kills < 3 {
		from := active()
		cmd := serve()
		start := time.Now()
		// Kill once the anneal has progressed and test runs (not just noop ones) are in flight.
		for time.Now().Before(deadline) {
			running, _ := watch.Client.NodeRole.Query().Where(noderole.StateEQ(noderole.StateTRANSITION),
				noderole.HasRoleWith(role.Executor("test"))).Count(ctx)
			if active() >= from+150 && running >= 8 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		kills++
		inflight, _ := watch.Client.NodeRole.Query().Where(noderole.StateEQ(noderole.StateTRANSITION)).Count(ctx)
		t.Logf("kill %d after %s: %d → %d ACTIVE, %d in TRANSITION", kills, time.Since(start).Round(time.Millisecond), from, active(), inflight)
		if active() >= total {
			t.Fatalf("anneal finished before kill %d: make the runs slower", kills)
		}
	}
	cmd := serve()
	finish := time.Now()
	for active() < total && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	t.Logf("final run reached %d/%d ACTIVE in %s", active(), total, time.Since(finish).Round(time.Millisecond))

	bad, _ := watch.Client.NodeRole.Query().Where(noderole.StateNEQ(noderole.StateACTIVE)).All(ctx)
	for i, nr := range bad {
		if i < 5 {
			t.Errorf("node-role %d is %s: %s", nr.ID, nr.State, nr.Status)
		}
	}
	if len(bad) > 0 {
		t.Fatalf("%d node-roles not ACTIVE", len(bad))
	}
	// Every effect exactly once.
	fh, err := os.Open(effects)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	seen := map[string]int{}
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 3 {
			t.Fatalf("torn effect line %q", sc.Text())
		}
		seen[fs[0]]++
	}
	if len(seen) != 1000 {
		t.Errorf("%d node-roles have an effect, want 1000", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("node-role %s: effect applied %d times", id, n)
		}
	}
	abandoned, _ := watch.Client.Run.Query().Where(run.StatusEQ(run.StatusABANDONED)).Count(ctx)
	verified, _ := watch.Client.NodeRole.Query().Where(noderole.StatusContains("verified")).Count(ctx)
	t.Logf("%d runs abandoned by the kills, %d node-roles completed by verification; total %s",
		abandoned, verified, time.Since(began).Round(time.Millisecond))
	if abandoned == 0 {
		t.Error("no run was interrupted: the kills did not hit the anneal mid-run")
	}
	_ = fmt.Sprint
}
