package fleet_test

import (
	"context"
	"github.com/prybar/prybar/provision/redfish/redfishsim/redfishsimtest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/machine"
	"github.com/prybar/prybar/internal/apitest"
	"github.com/prybar/prybar/internal/secret"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/bmc"
	"github.com/prybar/prybar/provision/fleet"
	"github.com/prybar/prybar/provision/ipmi"
	"github.com/prybar/prybar/provision/oob"
	"github.com/prybar/prybar/provision/redfish"
	"github.com/prybar/prybar/scheduler/executor"
)

func mockupDir(t testing.TB) string {
	t.Helper()
	return redfishsimtest.Mockup(t, "public-rackmount1")
}

func startFleet(t testing.TB, n int, share float64, delay time.Duration) *fleet.Fleet {
	t.Helper()
	f, err := fleet.Start(fleet.Config{Machines: n, RedfishShare: share, MockupDir: mockupDir(t), PowerDelay: delay})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s := f.Stats(); s.OpenSessions != 0 {
			t.Errorf("fleet holds %d open sessions at the end", s.OpenSessions)
		}
		_ = f.Close()
	})
	return f
}

func fastExec(st *store.Store) *oob.Executor {
	return oob.New(oob.Config{
		SettleTimeout: 20 * time.Second, PollInterval: 10 * time.Millisecond, CycleOffWindow: 2 * time.Second,
		RedfishOptions: []redfish.Option{redfish.WithRetry(4, 10*time.Millisecond), redfish.WithTimeout(10 * time.Second)},
		IPMIOptions:    []ipmi.Option{ipmi.WithCipherSuite(3), ipmi.WithTimeout(2 * time.Second)},
	})
}

func TestMixAndUniqueMACs(t *testing.T) {
	f := startFleet(t, 10, 0.5, 20*time.Millisecond)
	s := f.Stats()
	if s.Redfish != 5 || s.IPMI != 5 {
		t.Fatalf("mix %d redfish / %d ipmi", s.Redfish, s.IPMI)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seen := map[string]string{}
	for _, b := range f.BMCs {
		if b.Protocol != "redfish" {
			continue
		}
		c := redfish.New(b.Endpoint())
		inv, err := c.Inventory(ctx)
		_ = c.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(inv.NICs) == 0 {
			t.Fatal("no NICs")
		}
		for _, n := range inv.NICs {
			if other, dup := seen[n.MACAddress]; dup {
				t.Fatalf("MAC %s on %s and %s", n.MACAddress, other, b.Name)
			}
			seen[n.MACAddress] = b.Name
		}
	}
}

// Register puts every machine and its BMC into a running Prybar through GraphQL, idempotently;
// the BMC password is stored sealed; then the executor discovers them all (unique MACs make the
// inventories fit together) and power operations on the whole fleet never overlap on one BMC.
func TestRegisterAndDiscover(t *testing.T) {
	f := startFleet(t, 12, 0.5, 20*time.Millisecond)
	key, err := secret.LoadOrCreateKey(filepath.Join(t.TempDir(), "prybar.key"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "prybar.db"), store.Options{SecretKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv := apitest.Serve(t, st)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	reg, err := f.Register(ctx, srv.URL, fleet.RegisterOptions{Alive: true, RackSize: 5, Token: srv.Token})
	if err != nil {
		t.Fatal(err)
	}
	if reg.Created != 12 {
		t.Fatalf("created %d", reg.Created)
	}
	again, err := f.Register(ctx, srv.URL+"/graphql", fleet.RegisterOptions{Alive: true, RackSize: 5, Token: srv.Token})
	if err != nil || again.Created != 0 || again.MachineIDs[3] != reg.MachineIDs[3] {
		t.Fatalf("second registration: %+v, %v", again, err)
	}
	ms, err := st.Client.Machine.Query().WithBmc().Order(ent.Asc(machine.FieldName)).All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 12 {
		t.Fatalf("%d machines", len(ms))
	}
	if n, _ := st.Client.Rack.Query().Count(ctx); n != 3 {
		t.Errorf("%d racks, want 3", n)
	}
	e := fastExec(st)
	var wg sync.WaitGroup
	errs := make(chan error, 3*len(ms))
	for i, m := range ms {
		b := f.BMCs[i]
		if m.Name != b.Name || m.Edges.Bmc == nil || m.Edges.Bmc.Port != b.Port {
			t.Fatalf("machine %d = %s %+v, want %s port %d", i, m.Name, m.Edges.Bmc, b.Name, b.Port)
		}
		if !secret.IsSealed(m.Edges.Bmc.Password) {
			t.Fatalf("BMC password stored unsealed")
		}
		// The record as stored (sealed password) goes through the one conversion the annealer uses.
		ep, err := bmc.FromRecord(m.Edges.Bmc, st.SecretKey)
		if err != nil {
			t.Fatal(err)
		}
		in := executor.Input{Machine: executor.Machine{ID: m.ID, Name: m.Name, BMC: &ep}}
		for _, a := range []string{"inventory", "power-on", "inventory"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				in := in
				in.Attrs = map[string]any{"action": a}
				res, err := e.Run(ctx, in)
				if err == nil {
					// What the annealer does with the success: commit the inventory.
					err = st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error { return e.Commit(ctx, tx, in, res) })
				}
				if err != nil {
					errs <- err
					t.Log(res.Log)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n, _ := st.Client.NIC.Query().Count(ctx); n != 6*2 {
		t.Errorf("%d NICs recorded, want 12 (6 Redfish machines x 2 physical NICs)", n)
	}
	if n, _ := st.Client.Machine.Query().Where(machine.Alive(true)).Count(ctx); n != 12 {
		t.Errorf("%d alive machines", n)
	}
	s := f.Stats()
	if s.MaxPeakConcurrent != 1 || e.PeakActive() != 1 {
		t.Errorf("peak concurrent per BMC: fleet %d, executor %d; want 1\n%s", s.MaxPeakConcurrent, e.PeakActive(), s)
	}
	t.Log(s)
}
