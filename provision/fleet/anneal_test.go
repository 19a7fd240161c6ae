package fleet_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/internal/apitest"
	"github.com/prybar/prybar/internal/secret"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/bmc"
	"github.com/prybar/prybar/provision/fleet"
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
	key, err := secret.LoadOrCreateKey(filepath.Join(t.TempDir(), "prybar.key"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "prybar.db"), store.Options{SecretKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv := apitest.Serve(t, st)
	reg, err := f.Register(ctx, srv.URL, fleet.RegisterOptions{Alive: true})
	if err != nil {
		t.Fatal(err)
	}

	e := fastExec(st)
	a := scheduler.New(st, executor.NewRegistry(executor.Noop{}, e), scheduler.Options{
		Log:             slog.New(slog.NewTextHandler(io.Discard, nil)),
		Sweep:           100 * time.Millisecond,
		DecryptPassword: func(s string) (string, error) { return secret.OpenIfSealed(key, s) },
	})
	if _, err := a.LoadRoles(ctx, catalog.Builtin()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.EnsureSystem(ctx); err != nil {
		t.Fatal(err)
	}
	dep, err := a.CreateDeployment(ctx, "fleet", 0)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int, n)
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
	defer a.Stop()
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
	if s.MaxPeakConcurrent != 1 || s.MaxPeakSessions != 1 || e.PeakActive() != 1 || s.OpenSessions != 0 {
		t.Errorf("per BMC: peak concurrent %d, peak sessions %d, executor peak %d, open sessions %d; want 1, 1, 1, 0",
			s.MaxPeakConcurrent, s.MaxPeakSessions, e.PeakActive(), s.OpenSessions)
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
