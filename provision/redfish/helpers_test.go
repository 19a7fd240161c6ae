package redfish_test

import (
	"context"
	"encoding/json"
	"github.com/prybar/prybar/provision/redfish/redfishsim/redfishsimtest"
	"testing"
	"time"

	"github.com/prybar/prybar/provision/bmc"
	"github.com/prybar/prybar/provision/redfish"
	"github.com/prybar/prybar/provision/redfish/redfishsim"
)

var mockups = []string{"public-rackmount1", "public-localstorage"}

type fixture struct {
	sim *redfishsim.Simulator
	ep  bmc.Endpoint
	dir string
	url string
}

const (
	testUser = redfishsimtest.User
	testPass = redfishsimtest.Password
)

// newFixture serves a mock-up and, when the test ends, asserts that no session was leaked: a BMC
// with a full session table locks everyone out, so every test doubles as a leak test.
func newFixture(t *testing.T, mockup string, cfg redfishsim.Config) *fixture {
	t.Helper()
	sim := redfishsimtest.Start(t, mockup, cfg)
	return &fixture{sim: sim.Simulator, dir: sim.Dir, url: sim.URL, ep: sim.Endpoint()}
}

// newFixtureDir serves a mock-up folder (testdata variants) like newFixture.
func newFixtureDir(t *testing.T, dir string, cfg redfishsim.Config) *fixture {
	t.Helper()
	sim := redfishsimtest.StartDir(t, dir, cfg)
	return &fixture{sim: sim.Simulator, dir: sim.Dir, url: sim.URL, ep: sim.Endpoint()}
}

// fastOpts keep retries and polling quick enough for unit tests.
func fastOpts(extra ...redfish.Option) []redfish.Option {
	return append([]redfish.Option{
		redfish.WithRetry(4, 5*time.Millisecond), redfish.WithPowerPoll(10*time.Millisecond, 5*time.Second),
		redfish.WithTimeout(5 * time.Second),
	}, extra...)
}

func (f *fixture) client(t *testing.T, opts ...redfish.Option) *redfish.Client {
	t.Helper()
	c := redfish.New(f.ep, fastOpts(opts...)...)
	t.Cleanup(func() {
		if err := c.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return c
}

// mockJSON reads the mock-up resource at a Redfish path (as found in @odata.id).
func (f *fixture) mockJSON(t *testing.T, odataPath string) map[string]any {
	t.Helper()
	return redfishsimtest.ReadMock(t, f.dir, odataPath)
}

func (f *fixture) mockMembers(t *testing.T, odataPath string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, m := range f.mockJSON(t, odataPath)["Members"].([]any) {
		out = append(out, f.mockJSON(t, m.(map[string]any)["@odata.id"].(string)))
	}
	return out
}

func str(m map[string]any, k string) string { s, _ := m[k].(string); return s }

func num(t *testing.T, v any) int64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("not a number: %v", v)
	}
	i, err := n.Int64()
	if err != nil {
		f, ferr := n.Float64()
		if ferr != nil {
			t.Fatal(err)
		}
		return int64(f)
	}
	return i
}

func state(m map[string]any) string {
	s, _ := m["Status"].(map[string]any)
	return str(s, "State")
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitPower polls like an executor does, bounded.
func waitPower(t *testing.T, c *redfish.Client, want bmc.PowerState) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := c.PowerState(ctxT(t))
		if err == nil && st == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("power state did not reach %s: last %q, %v", want, st, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
