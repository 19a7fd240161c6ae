package redfish_test

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prybar/prybar/provision/bmc"
	"github.com/prybar/prybar/provision/redfish"
	"github.com/prybar/prybar/provision/redfish/redfishsim"
)

// The DMTF mock-ups cover one well-behaved BMC; these tests build small trees for the shapes they
// lack: several systems, transitional power states, PowerCycle, ActionInfo and media actions.

type tree map[string]map[string]any

func (tr tree) write(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for p, res := range tr {
		rel := strings.TrimPrefix(p, "/redfish/v1")
		d := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		res["@odata.id"] = p
		b, _ := json.Marshal(res)
		if err := os.WriteFile(filepath.Join(d, "index.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func ref(p string) map[string]any { return map[string]any{"@odata.id": p} }

func refs(ps ...string) []any {
	var out []any
	for _, p := range ps {
		out = append(out, ref(p))
	}
	return out
}

func system(id string, power any, reset map[string]any) map[string]any {
	return map[string]any{
		"@odata.type": "#ComputerSystem.v1_20_0.ComputerSystem", "Id": id, "PowerState": power,
		"Boot":    map[string]any{"BootSourceOverrideTarget": "None", "BootSourceOverrideEnabled": "Disabled"},
		"Actions": map[string]any{"#ComputerSystem.Reset": reset},
		"Links":   map[string]any{"ManagedBy": refs("/redfish/v1/Managers/M")},
	}
}

func baseTree(systems ...string) tree {
	return tree{
		"/redfish/v1":          {"Systems": ref("/redfish/v1/Systems"), "Managers": ref("/redfish/v1/Managers")},
		"/redfish/v1/Systems":  {"Members": refs(systems...)},
		"/redfish/v1/Managers": {"Members": refs("/redfish/v1/Managers/M")},
		"/redfish/v1/Managers/M": {
			"@odata.type": "#Manager.v1_10_0.Manager", "VirtualMedia": ref("/redfish/v1/Managers/M/VirtualMedia"),
			"Actions": map[string]any{"#Manager.Reset": map[string]any{"target": "/redfish/v1/Managers/M/Actions/Manager.Reset"}},
		},
		"/redfish/v1/Managers/M/VirtualMedia": {"Members": refs("/redfish/v1/Managers/M/VirtualMedia/USB", "/redfish/v1/Managers/M/VirtualMedia/CD")},
		"/redfish/v1/Managers/M/VirtualMedia/USB": {
			"@odata.type": "#VirtualMedia.v1_3_0.VirtualMedia", "MediaTypes": []any{"USBStick"}, "Inserted": false,
		},
		"/redfish/v1/Managers/M/VirtualMedia/CD": {
			"@odata.type": "#VirtualMedia.v1_3_0.VirtualMedia", "MediaTypes": []any{"CD", "DVD"}, "Inserted": false, "Image": nil,
			"Actions": map[string]any{
				"#VirtualMedia.InsertMedia": map[string]any{"target": "/redfish/v1/Managers/M/VirtualMedia/CD/Actions/VirtualMedia.InsertMedia"},
				"#VirtualMedia.EjectMedia":  map[string]any{"target": "/redfish/v1/Managers/M/VirtualMedia/CD/Actions/VirtualMedia.EjectMedia"},
			},
		},
	}
}

func syntheticFixture(t *testing.T, tr tree) *fixture {
	t.Helper()
	dir := tr.write(t)
	sim, err := redfishsim.New(redfishsim.Config{MockupDir: dir, Username: testUser, Password: testPass, PowerDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() {
		srv.Close()
		_ = sim.Close()
		if n := sim.OpenSessions(); n != 0 {
			t.Errorf("simulator still holds %d open sessions after the test", n)
		}
	})
	u, _ := url.Parse(srv.URL)
	host, port, _ := net.SplitHostPort(u.Host)
	p, _ := strconv.Atoi(port)
	return &fixture{sim: sim, dir: dir, url: srv.URL, ep: bmc.Endpoint{Address: host, Port: p, Scheme: "http", Username: testUser, Password: testPass}}
}

func TestUnknownPowerStates(t *testing.T) {
	for _, power := range []any{"PoweringOn", nil, "", 7} {
		tr := baseTree("/redfish/v1/Systems/S")
		tr["/redfish/v1/Systems/S"] = system("S", power, map[string]any{"target": "/redfish/v1/Systems/S/Actions/ComputerSystem.Reset"})
		f := syntheticFixture(t, tr)
		st, err := f.client(t).PowerState(ctxT(t))
		if !errors.Is(err, bmc.ErrUnknownPowerState) || st != "" {
			t.Errorf("PowerState %v: got %q, %v; want ErrUnknownPowerState", power, st, err)
		}
	}
}

func TestSeveralSystemsNeedASystemID(t *testing.T) {
	tr := baseTree("/redfish/v1/Systems/A", "/redfish/v1/Systems/B")
	tr["/redfish/v1/Systems/A"] = system("A", "On", map[string]any{"target": "/redfish/v1/Systems/A/Actions/ComputerSystem.Reset"})
	tr["/redfish/v1/Systems/B"] = system("B", "Off", map[string]any{"target": "/redfish/v1/Systems/B/Actions/ComputerSystem.Reset"})
	f := syntheticFixture(t, tr)
	if _, err := f.client(t).PowerState(ctxT(t)); err == nil || !strings.Contains(err.Error(), "manages 2 systems") {
		t.Fatalf("err = %v, want a complaint about several systems", err)
	}
	ep := f.ep
	ep.SystemID = "B"
	c := redfish.New(ep, fastOpts()...)
	t.Cleanup(func() { _ = c.Close(t.Context()) })
	if st, err := c.PowerState(ctxT(t)); err != nil || st != bmc.PowerOff {
		t.Fatalf("system B: %q, %v", st, err)
	}
	ep.SystemID = "C"
	c2 := redfish.New(ep, fastOpts()...)
	t.Cleanup(func() { _ = c2.Close(t.Context()) })
	if _, err := c2.PowerState(ctxT(t)); err == nil || !strings.Contains(err.Error(), `"C" not found`) {
		t.Fatalf("err = %v", err)
	}
}

func TestResetTypeSelection(t *testing.T) {
	tr := baseTree("/redfish/v1/Systems/S")
	// Allowable values only via ActionInfo, with PowerCycle and without GracefulShutdown.
	tr["/redfish/v1/Systems/S"] = system("S", "On", map[string]any{
		"target":              "/redfish/v1/Systems/S/Actions/ComputerSystem.Reset",
		"@Redfish.ActionInfo": "/redfish/v1/Systems/S/ResetActionInfo",
	})
	tr["/redfish/v1/Systems/S/ResetActionInfo"] = map[string]any{"Parameters": []any{map[string]any{
		"Name": "ResetType", "AllowableValues": []any{"ForceOn", "ForceOff", "PowerCycle", "ForceRestart"},
	}}}
	f := syntheticFixture(t, tr)
	c := f.client(t)
	for _, a := range []bmc.PowerAction{bmc.ActionCycle, bmc.ActionOn, bmc.ActionOff, bmc.ActionReset} {
		if err := c.Power(ctxT(t), a); err != nil {
			t.Fatalf("%s: %v", a, err)
		}
	}
	if got, want := resetTypes(f), []string{"PowerCycle", "ForceOn", "ForceOff", "ForceRestart"}; !slices.Equal(got, want) {
		t.Errorf("reset types = %v, want %v", got, want)
	}
	err := c.Power(ctxT(t), bmc.ActionSoft)
	if err == nil || !strings.Contains(err.Error(), "allows no reset type") || !strings.Contains(err.Error(), "PowerCycle") {
		t.Fatalf("soft: %v, want an error listing the allowed types", err)
	}
}

func TestVirtualMediaActionsAndManagerResetDefaults(t *testing.T) {
	tr := baseTree("/redfish/v1/Systems/S")
	tr["/redfish/v1/Systems/S"] = system("S", "On", map[string]any{"target": "/redfish/v1/Systems/S/Actions/ComputerSystem.Reset"})
	f := syntheticFixture(t, tr)
	c := f.client(t)
	const img = "http://192.0.2.1/a.iso"
	if err := c.InsertMedia(ctxT(t), img); err != nil {
		t.Fatal(err)
	}
	if err := c.InsertMedia(ctxT(t), img+".2"); err != nil { // over a mounted image: eject first
		t.Fatal(err)
	}
	if err := c.EjectMedia(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	var posts []string
	for _, op := range f.sim.Ops() {
		if op.Method == http.MethodPost && strings.Contains(op.Path, "VirtualMedia") {
			posts = append(posts, op.Path[strings.LastIndex(op.Path, ".")+1:])
		}
		if op.Method == http.MethodPatch {
			t.Errorf("PATCH %s although the media advertises actions", op.Path)
		}
	}
	if want := []string{"InsertMedia", "EjectMedia", "InsertMedia", "EjectMedia"}; !slices.Equal(posts, want) {
		t.Errorf("media actions = %v, want %v", posts, want)
	}
	// No allowable values on the manager: the standard set applies and GracefulRestart is chosen.
	if err := c.ResetBMC(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if got := resetTypes(f); !slices.Equal(got, []string{"GracefulRestart"}) {
		t.Errorf("manager reset types = %v", got)
	}
}
