package fleet_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/internal/apitest"
	"github.com/prybar/prybar/internal/secret"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/bmc"
	"github.com/prybar/prybar/provision/fleet"
	"github.com/prybar/prybar/provision/oob"
	"github.com/prybar/prybar/provision/redfish"
	"github.com/prybar/prybar/provision/redfish/redfishsim"
	"github.com/prybar/prybar/scheduler"
	"github.com/prybar/prybar/scheduler/catalog"
	"github.com/prybar/prybar/scheduler/executor"
)

// End to end: 200 simulated machines (half Redfish, half IPMI) registered through the GraphQL
// API with sealed BMC passwords, then the annealer runs bmc-discover → pxe-boot-once on all of
// them through the bmc executor. Every node-role ends ACTIVE, every machine booted (or is set to
// boot) from PXE, and no BMC ever saw two operations at once — counted three ways: the
// executor's own per-BMC counter, and the simulators' peak concurrent requests and sessions.
func TestAnnealDiscoverThenPXE200(t *testing.T) {
	if testing.Short() {
		t.Skip("fleet-scale annealing test")
	}
	const n = 200
	f := startFleet(t, n, 0.5, 20*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	st, a, e, dep := annealSetup(t, ctx, f, catalog.Builtin())
	start := time.Now()
	if _, err := a.CommitDeployment(ctx, dep.ID); err != nil {
		t.Fatal(err)
	}
	for {
		total, _ := st.Client.NodeRole.Query().Count(ctx)
		active, _ := st.Client.NodeRole.Query().Where(noderole.StateEQ(noderole.StateACTIVE)).Count(ctx)
		if total == 2*n && active == total {
			break
		}
		if failed, _ := st.Client.NodeRole.Query().Where(noderole.StateEQ(noderole.StateERROR), noderole.NextAttemptAtIsNil()).All(ctx); len(failed) > 0 {
			t.Fatalf("%d node-roles failed for good, e.g. %d: %s", len(failed), failed[0].ID, failed[0].Status)
		}
		if ctx.Err() != nil {
			t.Fatalf("not settled: %d of %d node-roles ACTIVE", active, total)
		}
		time.Sleep(50 * time.Millisecond)
	}
	elapsed := time.Since(start)
	if s, _ := a.DeploymentState(ctx, dep.ID); s != scheduler.DeploymentActive {
		t.Errorf("deployment %s", s)
	}

	s := f.Stats()
	if s.MaxPeakConcurrent != 1 || e.PeakActive() != 1 {
		t.Errorf("per BMC: peak concurrent %d, executor peak %d; want 1, 1", s.MaxPeakConcurrent, e.PeakActive())
	}
	// Sessions. Under load an IPMI handshake can outlast the client's timeout: the client gives
	// up and abandons it (it cannot close a session whose handshake it did not finish), and the
	// BMC — the simulator as a real one — holds it until its 60 s inactivity timeout. Those are
	// not leaks; a session a client still holds is (go-ipmi keeps it alive, so it never expires).
	// So: with nothing abandoned, every BMC saw one session at a time and none is open now;
	// otherwise wait for the observable end state — every session gone — within the inactivity
	// timeout (plus the simulator's scan tolerance), which only abandoned sessions reach.
	if s.OpenSessions == 0 && s.MaxPeakSessions != 1 {
		t.Errorf("peak sessions per BMC %d with no session abandoned; want 1", s.MaxPeakSessions)
	}
	if open := s.OpenSessions; open != 0 {
		waited := time.Now()
		for deadline := waited.Add(75 * time.Second); f.Stats().OpenSessions != 0; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				for _, b := range f.Stats().BMCs {
					if b.OpenSessions > 0 {
						t.Errorf("%s (%s): %d sessions still open 75 s after the anneal: held, not abandoned", b.Name, b.Protocol, b.OpenSessions)
					}
				}
				break
			}
		}
		t.Logf("%d sessions open when the anneal settled (handshakes abandoned under load); all expired after %s",
			open, time.Since(waited).Round(time.Second))
	}
	for _, b := range f.BMCs {
		if b.Redfish != nil {
			boot, _ := b.Redfish.Resource(b.SystemPath())["Boot"].(map[string]any)
			if boot["BootSourceOverrideTarget"] != "Pxe" {
				t.Errorf("%s: boot override %v", b.Name, boot)
			}
		} else if dev, boots := b.IPMI.LastBoot(); dev != bmc.BootPXE || boots == 0 {
			t.Errorf("%s: last boot %q (%d boots)", b.Name, dev, boots)
		}
	}
	if n2, _ := st.Client.NIC.Query().Count(ctx); n2 != n/2*2 {
		t.Errorf("%d NICs recorded, want %d", n2, n/2*2)
	}
	t.Logf("%d machines annealed (discover + pxe-boot-once) in %s; %s", n, elapsed.Round(time.Millisecond), s)
}

// annealSetup registers the fleet's machines through the GraphQL API (sealed passwords), builds an
// annealer with the bmc executor over cat, binds bmc-discover then pxe-boot-once on every machine
// in a new deployment, and starts the annealer (stopped at cleanup).
func annealSetup(t *testing.T, ctx context.Context, f *fleet.Fleet, cat *catalog.Catalog) (*store.Store, *scheduler.Annealer, *oob.Executor, *ent.Deployment) {
	t.Helper()
	key, err := secret.LoadOrCreateKey(filepath.Join(t.TempDir(), "prybar.key"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "prybar.db"), store.Options{SecretKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := apitest.Serve(t, st)
	reg, err := f.Register(ctx, srv.URL, fleet.RegisterOptions{Alive: true, Token: srv.Token})
	if err != nil {
		t.Fatal(err)
	}
	e := fastExec(st)
	a := scheduler.New(st, executor.NewRegistry(executor.Noop{}, e), scheduler.Options{
		Log:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Sweep: 100 * time.Millisecond,
	})
	if _, err := a.LoadRoles(ctx, cat); err != nil {
		t.Fatal(err)
	}
	if _, err := a.EnsureSystem(ctx); err != nil {
		t.Fatal(err)
	}
	dep, err := a.CreateDeployment(ctx, "fleet", 0)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int, len(reg.MachineIDs))
	for i, s := range reg.MachineIDs {
		if ids[i], err = strconv.Atoi(s); err != nil {
			t.Fatalf("machine id %q is not an integer: %v", s, err)
		}
	}
	// Each role bound on every machine, in order, so each machine gets its own chain.
	for _, r := range []string{"bmc-discover", "pxe-boot-once"} {
		if _, err := a.BindRoles(ctx, ids, r, dep.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Stop)
	return st, a, e, dep
}

// A BMC that answers 200 to the boot-override PATCH but ignores it: the pxe-boot-once run ends in
// ERROR saying the override did not take, while the honest machine's chain completes.
func TestAnnealIgnoredBootOverrideEndsError(t *testing.T) {
	f := startFleet(t, 2, 1.0, 20*time.Millisecond)
	// The mock-up ships with a one-time PXE override already set: move it away first, or an
	// ignored PATCH would look like success.
	c := redfish.New(f.BMCs[0].Endpoint())
	if err := c.SetBootDevice(context.Background(), bmc.BootDisk, bmc.BootOptions{Persistent: true}); err != nil {
		t.Fatal(err)
	}
	c.Close(context.Background())
	f.BMCs[0].Redfish.SetFaults(redfishsim.Faults{IgnoreBootOverride: true})
	cat := catalog.Builtin() // pxe-boot-once does not retry: the first failure is final
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, a, _, dep := annealSetup(t, ctx, f, cat)
	if _, err := a.CommitDeployment(ctx, dep.ID); err != nil {
		t.Fatal(err)
	}
	for {
		failed, _ := st.Client.NodeRole.Query().Where(noderole.StateEQ(noderole.StateERROR), noderole.NextAttemptAtIsNil()).WithMachine().All(ctx)
		active, _ := st.Client.NodeRole.Query().Where(noderole.StateEQ(noderole.StateACTIVE)).Count(ctx)
		if len(failed) == 1 && active == 3 {
			if failed[0].Edges.Machine.Name != f.BMCs[0].Name || !strings.Contains(failed[0].Status, "did not take") {
				t.Fatalf("failed node-role on %s with status %q", failed[0].Edges.Machine.Name, failed[0].Status)
			}
			runs, _ := failed[0].QueryRuns().All(ctx)
			if len(runs) != 1 || !strings.Contains(runs[0].Error, "did not take") {
				t.Fatalf("runs = %+v", runs)
			}
			return
		}
		if ctx.Err() != nil {
			all, _ := st.Client.NodeRole.Query().All(context.Background())
			for _, nr := range all {
				t.Logf("node-role %d: %s %q", nr.ID, nr.State, nr.Status)
			}
			t.Fatalf("not settled: %d failed, %d active", len(failed), active)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
