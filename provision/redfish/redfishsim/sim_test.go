package redfishsim

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prybar/prybar/internal/testenv"
)

func mockup(t *testing.T) string {
	t.Helper()
	dir, err := FindMockup("public-rackmount1")
	testenv.Require(t, "Redfish mock-up", err)
	return dir
}

const sys = "/redfish/v1/Systems/437XR1138R2"

type harness struct {
	t   *testing.T
	sim *Simulator
	url string
}

func newHarness(t *testing.T, cfg Config) *harness {
	cfg.MockupDir = mockup(t)
	cfg.Username, cfg.Password = "u", "p"
	sim, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() { srv.Close(); _ = sim.Close() })
	return &harness{t: t, sim: sim, url: srv.URL}
}

func (h *harness) do(method, path, body string, hdr ...string) (*http.Response, string) {
	h.t.Helper()
	req, _ := http.NewRequest(method, h.url+path, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func basic() []string { return []string{"Authorization", "Basic dTpw"} } // u:p

func TestAuthentication(t *testing.T) {
	h := newHarness(t, Config{MaxSessions: 1})
	if r, _ := h.do("GET", "/redfish/v1/", ""); r.StatusCode != 200 {
		t.Fatalf("service root: %d, want 200 without credentials", r.StatusCode)
	}
	if r, _ := h.do("GET", sys, ""); r.StatusCode != 401 {
		t.Fatalf("system without credentials: %d, want 401", r.StatusCode)
	}
	if r, _ := h.do("GET", sys, "", basic()...); r.StatusCode != 200 {
		t.Fatalf("system with Basic: %d", r.StatusCode)
	}
	if r, _ := h.do("POST", "/redfish/v1/SessionService/Sessions", `{"UserName":"u","Password":"x"}`); r.StatusCode != 401 {
		t.Fatalf("bad password login: %d", r.StatusCode)
	}
	r, _ := h.do("POST", "/redfish/v1/SessionService/Sessions", `{"UserName":"u","Password":"p"}`)
	tok, loc := r.Header.Get("X-Auth-Token"), r.Header.Get("Location")
	if r.StatusCode != 201 || tok == "" || !strings.HasPrefix(loc, "/redfish/v1/SessionService/Sessions/") {
		t.Fatalf("login: %d token %q location %q", r.StatusCode, tok, loc)
	}
	if r, _ := h.do("POST", "/redfish/v1/SessionService/Sessions", `{"UserName":"u","Password":"p"}`); r.StatusCode != 503 {
		t.Fatalf("login beyond the cap: %d, want 503", r.StatusCode)
	}
	if _, body := h.do("GET", "/redfish/v1/SessionService/Sessions", "", "X-Auth-Token", tok); !strings.Contains(body, loc) {
		t.Fatalf("session collection does not list the live session: %s", body)
	}
	if r, _ := h.do("DELETE", loc, "", "X-Auth-Token", tok); r.StatusCode != 204 {
		t.Fatalf("logout: %d", r.StatusCode)
	}
	if r, _ := h.do("GET", sys, "", "X-Auth-Token", tok); r.StatusCode != 401 {
		t.Fatalf("token after logout: %d, want 401", r.StatusCode)
	}
	if h.sim.OpenSessions() != 0 || h.sim.PeakSessions() != 1 {
		t.Fatalf("open %d peak %d", h.sim.OpenSessions(), h.sim.PeakSessions())
	}
}

func powerState(h *harness) string {
	_, body := h.do("GET", sys, "", basic()...)
	var m struct{ PowerState string }
	_ = json.Unmarshal([]byte(body), &m)
	return m.PowerState
}

func TestResetChangesPowerAfterDelay(t *testing.T) {
	h := newHarness(t, Config{PowerDelay: 500 * time.Millisecond})
	target := sys + "/Actions/ComputerSystem.Reset"
	if r, _ := h.do("POST", target, `{"ResetType":"PowerCycle"}`, basic()...); r.StatusCode != 400 {
		t.Fatalf("PowerCycle is not allowed by the mock-up: %d, want 400", r.StatusCode)
	}
	if r, _ := h.do("POST", target, `{"ResetType":"ForceOff"}`, basic()...); r.StatusCode != 204 {
		t.Fatalf("ForceOff: %d", r.StatusCode)
	}
	if st := powerState(h); st != "On" {
		t.Fatalf("state right after ForceOff = %s, want On until the delay passed", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for powerState(h) != "Off" {
		if time.Now().After(deadline) {
			t.Fatal("never turned off")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ops := h.sim.Ops()
	var resets []string
	for _, op := range ops {
		if op.ResetType != "" {
			resets = append(resets, op.ResetType)
		}
	}
	if strings.Join(resets, ",") != "PowerCycle,ForceOff" {
		t.Fatalf("logged reset types %v", resets)
	}
}

func TestPatchValidation(t *testing.T) {
	h := newHarness(t, Config{})
	for body, want := range map[string]int{
		`{"Boot":{"BootSourceOverrideTarget":"Floppy"}}`: 400, // not in the mock-up's allowable values
		`{"PowerState":"Off"}`:                           400, // read-only
		`{"Boot":{"BootSourceOverrideTarget":"Hdd"}}`:    204,
	} {
		if r, b := h.do("PATCH", sys, body, basic()...); r.StatusCode != want {
			t.Errorf("PATCH %s: %d %s, want %d", body, r.StatusCode, b, want)
		}
	}
	if r, _ := h.do("PATCH", "/redfish/v1/Managers/BMC", `{}`, basic()...); r.StatusCode != 405 {
		t.Errorf("PATCH manager: %d, want 405", r.StatusCode)
	}
}

func TestRunPrintsURL(t *testing.T) {
	dir := mockup(t)
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"--mockup", dir, "--listen", "127.0.0.1:0", "--user", "u", "--password", "p"}, pw)
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	url := strings.Fields(line)[4]
	resp, err := http.Get(url + "/redfish/v1/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %v %v", url, resp, err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
