// Package redfishsimtest starts a Redfish BMC simulator for a test: it serves a DMTF mock-up on a
// loopback port, stops it at cleanup and fails the test if a session was left open — a BMC with a
// full session table locks everyone out, so every test that uses it doubles as a leak test.
package redfishsimtest

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prybar/prybar/internal/testenv"
	"github.com/prybar/prybar/provision/bmc"
	"github.com/prybar/prybar/provision/redfish/redfishsim"
)

// Credentials the simulator accepts.
const (
	User     = "admin"
	Password = "s3cret"
)

// Sim is a running simulator.
type Sim struct {
	*redfishsim.Simulator
	Dir  string // the mock-up served
	URL  string // http://127.0.0.1:PORT
	Host string
	Port int
	srv  *httptest.Server
}

// Stop takes the BMC off the network (its port refuses connections), as a dead BMC.
func (s *Sim) Stop() { s.srv.Close() }

// Endpoint is how a client reaches the simulator.
func (s *Sim) Endpoint() bmc.Endpoint {
	return bmc.Endpoint{Protocol: "redfish", Address: s.Host, Port: s.Port, Scheme: "http", Username: User, Password: Password}
}

// Start serves mockup (e.g. "public-rackmount1", found with redfishsim.FindMockup; the test is
// skipped when ../shared is absent, failed under CI=true) with cfg. A zero PowerDelay becomes 30 ms.
func Start(t testing.TB, mockup string, cfg redfishsim.Config) *Sim {
	t.Helper()
	return StartDir(t, Mockup(t, mockup), cfg)
}

// StartDir is Start for a mock-up folder, e.g. a variant in a package's testdata.
func StartDir(t testing.TB, dir string, cfg redfishsim.Config) *Sim {
	t.Helper()
	cfg.MockupDir = dir
	cfg.Username, cfg.Password = User, Password
	if cfg.PowerDelay == 0 {
		cfg.PowerDelay = 30 * time.Millisecond
	}
	sim, err := redfishsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() {
		srv.Close()
		_ = sim.Close()
		if n := sim.OpenSessions(); n != 0 {
			t.Errorf("Redfish simulator still holds %d open sessions after the test", n)
		}
	})
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	return &Sim{Simulator: sim, Dir: dir, URL: srv.URL, Host: host, Port: p, srv: srv}
}

// Mockup is the directory of the DMTF mock-up name (redfishsim.FindMockup). When ../shared is
// absent the test is skipped on a developer machine and fails under CI=true (testenv.Require).
func Mockup(t testing.TB, name string) string {
	t.Helper()
	dir, err := redfishsim.FindMockup(name)
	testenv.Require(t, "Redfish mock-up "+name, err)
	return dir
}

// Mock reads the mock-up resource at a Redfish path (as found in @odata.id), numbers kept as
// json.Number, so a test compares what a client reports with what the mock-up really says.
func (s *Sim) Mock(t testing.TB, odataPath string) map[string]any {
	t.Helper()
	return ReadMock(t, s.Dir, odataPath)
}

// ReadMock is Mock for a mock-up directory.
func ReadMock(t testing.TB, dir, odataPath string) map[string]any {
	t.Helper()
	rel := strings.TrimPrefix(strings.TrimSuffix(odataPath, "/"), "/redfish/v1")
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel), "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}
