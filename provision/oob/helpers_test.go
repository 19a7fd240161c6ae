package oob_test

import (
	"context"
	"encoding/json"
	"github.com/prybar/prybar/provision/redfish/redfishsim/redfishsimtest"
	"path/filepath"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/ipmi"
	"github.com/prybar/prybar/provision/oob"
	"github.com/prybar/prybar/provision/redfish"
	"github.com/prybar/prybar/provision/redfish/redfishsim"
	"github.com/prybar/prybar/scheduler/executor"
)

const (
	user = redfishsimtest.User
	pass = redfishsimtest.Password
)

type rfBMC struct {
	sim *redfishsim.Simulator
	dir string
	bmc *executor.BMC
}

// newRedfish serves a mock-up and asserts, when the test ends, that no session is left open.
func newRedfish(t testing.TB, mockup string, cfg redfishsim.Config) *rfBMC {
	t.Helper()
	sim := redfishsimtest.Start(t, mockup, cfg)
	return &rfBMC{sim: sim.Simulator, dir: sim.Dir, bmc: &executor.BMC{
		Protocol: "REDFISH", Address: sim.Host, Port: sim.Port, Scheme: "http", Username: user, Password: pass,
	}}
}

// mock reads the mock-up resource at a Redfish path.
func (f *rfBMC) mock(t testing.TB, odataPath string) map[string]any {
	t.Helper()
	return redfishsimtest.ReadMock(t, f.dir, odataPath)
}

func (f *rfBMC) members(t testing.TB, odataPath string) []map[string]any {
	var out []map[string]any
	for _, m := range f.mock(t, odataPath)["Members"].([]any) {
		out = append(out, f.mock(t, m.(map[string]any)["@odata.id"].(string)))
	}
	return out
}

func (f *rfBMC) systemPath(t testing.TB) string {
	ms := f.mock(t, "/redfish/v1/Systems")["Members"].([]any)
	return ms[0].(map[string]any)["@odata.id"].(string)
}

func fastConfig(st *store.Store) oob.Config {
	return oob.Config{
		SettleTimeout:  10 * time.Second,
		PollInterval:   10 * time.Millisecond,
		CycleOffWindow: 2 * time.Second,
		RedfishOptions: []redfish.Option{redfish.WithRetry(6, 5*time.Millisecond), redfish.WithPowerPoll(10*time.Millisecond, 5*time.Second), redfish.WithTimeout(5 * time.Second)},
		IPMIOptions:    []ipmi.Option{ipmi.WithCipherSuite(3), ipmi.WithTimeout(2 * time.Second)},
	}
}

// runCommit runs in and, on success, commits what it found the way the annealer does: Commit in
// a store transaction.
func runCommit(ctx context.Context, e *oob.Executor, st *store.Store, in executor.Input) (executor.Result, error) {
	res, err := e.Run(ctx, in)
	if err != nil {
		return res, err
	}
	return res, st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error { return e.Commit(ctx, tx, in, res) })
}

func openStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "prybar.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newMachine(t testing.TB, st *store.Store, name string) int {
	t.Helper()
	var id int
	err := st.Tx(context.Background(), func(ctx context.Context, tx *ent.Tx) error {
		m, err := tx.Machine.Create().SetName(name).Save(ctx)
		if err != nil {
			return err
		}
		id = m.ID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func input(id int, name string, b *executor.BMC, attrs map[string]any) executor.Input {
	return executor.Input{RunID: 1, Machine: executor.Machine{ID: id, Name: name, BMC: b}, Attrs: attrs}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func str(v any) string { s, _ := v.(string); return s }

func num(t testing.TB, v any) int64 {
	t.Helper()
	switch n := v.(type) {
	case json.Number:
		if i, err := n.Int64(); err == nil {
			return i
		}
		f, err := n.Float64()
		if err != nil {
			t.Fatal(err)
		}
		return int64(f)
	case float64:
		return int64(n)
	}
	t.Fatalf("not a number: %T %v", v, v)
	return 0
}
