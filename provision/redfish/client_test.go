package redfish_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prybar/prybar/provision/bmc"
	"github.com/prybar/prybar/provision/redfish"
	"github.com/prybar/prybar/provision/redfish/redfishsim"
)

func TestInventoryMatchesMockups(t *testing.T) {
	for _, mockup := range mockups {
		t.Run(mockup, func(t *testing.T) {
			f := newFixture(t, mockup, redfishsim.Config{})
			inv, err := f.client(t).Inventory(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			sys := f.mockMembers(t, "/redfish/v1/Systems")[0]
			for name, got := range map[string]string{
				"Manufacturer": inv.Manufacturer, "Model": inv.Model, "SerialNumber": inv.SerialNumber,
				"UUID": inv.UUID, "SKU": inv.SKU, "BiosVersion": inv.BIOSVersion,
			} {
				if want := str(sys, name); got != want || want == "" {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			if want := bmc.PowerState(strings.ToLower(str(sys, "PowerState"))); inv.PowerState != want {
				t.Errorf("PowerState = %q, want %q", inv.PowerState, want)
			}

			// Processors: installed CPUs only (the mock-ups list an absent socket and an FPGA).
			var wantCPUs []redfish.Processor
			for _, p := range f.mockMembers(t, sys["Processors"].(map[string]any)["@odata.id"].(string)) {
				if state(p) == "Absent" || (str(p, "ProcessorType") != "" && str(p, "ProcessorType") != "CPU") {
					continue
				}
				wantCPUs = append(wantCPUs, redfish.Processor{ID: str(p, "Id"), Socket: str(p, "Socket"),
					Model: str(p, "Model"), Arch: str(p, "InstructionSet"),
					Cores: int(num(t, p["TotalCores"])), Threads: int(num(t, p["TotalThreads"]))})
			}
			if len(wantCPUs) == 0 || inv.ProcessorCount != len(wantCPUs) || !slices.Equal(inv.Processors, wantCPUs) {
				t.Errorf("processors = %d %+v, want %d %+v", inv.ProcessorCount, inv.Processors, len(wantCPUs), wantCPUs)
			}

			// Memory: the summary, which in these mock-ups also equals the sum of the DIMMs.
			gib, _ := sys["MemorySummary"].(map[string]any)["TotalSystemMemoryGiB"].(interface{ Float64() (float64, error) }).Float64()
			wantMem := int64(math.Round(gib * (1 << 30)))
			var dimms int64
			for _, d := range f.mockMembers(t, sys["Memory"].(map[string]any)["@odata.id"].(string)) {
				if state(d) != "Absent" {
					dimms += num(t, d["CapacityMiB"]) << 20
				}
			}
			if inv.MemoryBytes != wantMem || wantMem == 0 || dimms != wantMem {
				t.Errorf("MemoryBytes = %d, want %d (DIMM sum %d)", inv.MemoryBytes, wantMem, dimms)
			}

			// NICs: physical host interfaces, lower-case colon MACs.
			var wantMACs []string
			for _, n := range f.mockMembers(t, sys["EthernetInterfaces"].(map[string]any)["@odata.id"].(string)) {
				links, _ := n["Links"].(map[string]any)
				if str(n, "EthernetInterfaceType") == "Virtual" || links["HostInterface"] != nil {
					continue
				}
				if mac := strings.ToLower(str(n, "MACAddress")); !slices.Contains(wantMACs, mac) {
					wantMACs = append(wantMACs, mac)
				}
			}
			var gotMACs []string
			for _, n := range inv.NICs {
				gotMACs = append(gotMACs, n.MACAddress)
				if n.SpeedMbps == 0 || n.LinkStatus == "" {
					t.Errorf("NIC %+v lacks speed or link status", n)
				}
			}
			slices.Sort(wantMACs)
			slices.Sort(gotMACs)
			if len(wantMACs) == 0 || !slices.Equal(gotMACs, wantMACs) {
				t.Errorf("NIC MACs = %v, want %v", gotMACs, wantMACs)
			}

			// Disks: Storage drives (which live under the chassis in public-localstorage) or, where
			// the mock-up only has SimpleStorage (public-rackmount1), its present devices.
			var want []string
			if st, ok := sys["Storage"].(map[string]any); ok {
				seen := map[string]bool{}
				for _, s := range f.mockMembers(t, st["@odata.id"].(string)) {
					for _, l := range s["Drives"].([]any) {
						d := f.mockJSON(t, l.(map[string]any)["@odata.id"].(string))
						if seen[str(d, "SerialNumber")] || state(d) == "Absent" {
							continue
						}
						seen[str(d, "SerialNumber")] = true
						want = append(want, fmt.Sprintf("%s/%s/%d/%s", str(d, "Model"), str(d, "SerialNumber"), num(t, d["CapacityBytes"]), strings.ToLower(str(d, "MediaType"))))
					}
				}
			} else {
				for _, s := range f.mockMembers(t, sys["SimpleStorage"].(map[string]any)["@odata.id"].(string)) {
					for _, dv := range s["Devices"].([]any) {
						d := dv.(map[string]any)
						if state(d) != "Absent" {
							want = append(want, fmt.Sprintf("%s//%d/", str(d, "Model"), num(t, d["CapacityBytes"])))
						}
					}
				}
			}
			var got []string
			for _, d := range inv.Disks {
				got = append(got, fmt.Sprintf("%s/%s/%d/%s", d.Model, d.SerialNumber, d.CapacityBytes, d.Kind))
			}
			slices.Sort(want)
			slices.Sort(got)
			if len(want) == 0 || !slices.Equal(got, want) {
				t.Errorf("disks = %v, want %v", got, want)
			}
		})
	}
}

func resetTypes(f *fixture) []string {
	var out []string
	for _, op := range f.sim.Ops() {
		if op.ResetType != "" && op.Status/100 == 2 {
			out = append(out, op.ResetType)
		}
	}
	return out
}

// TestPowerActionsReachState waits on the simulator's own state, never on a wall-clock deadline:
// under load (a shared CI machine) a power transition may take far longer than the simulator's
// delay, so the only bound is the test's context (the go test -timeout). The client's cycle poll
// gets the same treatment. It once failed under load with the former 5 s deadlines.
func TestPowerActionsReachState(t *testing.T) {
	for _, mockup := range mockups {
		t.Run(mockup, func(t *testing.T) {
			f := newFixture(t, mockup, redfishsim.Config{})
			// The cycle's wait for Off ends with the test, not after 5 s.
			c := f.client(t, redfish.WithPowerPoll(10*time.Millisecond, 24*time.Hour))
			ctx := t.Context()
			system := f.mockMembers(t, "/redfish/v1/Systems")[0]["@odata.id"].(string)
			wait := func(want bmc.PowerState) {
				t.Helper()
				waitSimPower(t, f, c, system, want)
			}

			if err := c.Power(ctx, bmc.ActionOff); err != nil {
				t.Fatal(err)
			}
			wait(bmc.PowerOff)
			if err := c.Power(ctx, bmc.ActionOn); err != nil {
				t.Fatal(err)
			}
			wait(bmc.PowerOn)

			// The mock-ups do not allow PowerCycle, so cycle must be ForceOff, observed Off, then On.
			if err := c.Power(ctx, bmc.ActionCycle); err != nil {
				t.Fatal(err)
			}
			wait(bmc.PowerOn)
			if err := c.Power(ctx, bmc.ActionSoft); err != nil {
				t.Fatal(err)
			}
			wait(bmc.PowerOff)
			if err := c.Power(ctx, bmc.ActionReset); err != nil {
				t.Fatal(err)
			}
			wait(bmc.PowerOn)

			want := []string{"ForceOff", "On", "ForceOff", "On", "GracefulShutdown", "ForceRestart"}
			if got := resetTypes(f); !slices.Equal(got, want) {
				t.Errorf("reset types sent = %v, want %v", got, want)
			}
			if f.sim.PeakSessions() != 1 {
				t.Errorf("client used %d sessions, want 1", f.sim.PeakSessions())
			}
		})
	}
}

// waitSimPower waits until the simulator's system is in want, then checks that the client reads the
// same state. Only the test's context bounds the wait. (Every reset above starts from the state
// opposite its outcome, so no transition of it is still pending once want is reached.)
func waitSimPower(t *testing.T, f *fixture, c *redfish.Client, system string, want bmc.PowerState) {
	t.Helper()
	simWant := map[bmc.PowerState]string{bmc.PowerOn: "On", bmc.PowerOff: "Off"}[want]
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for f.sim.Resource(system)["PowerState"] != simWant {
		select {
		case <-t.Context().Done():
			t.Fatalf("simulator never reached %s: %v", want, f.sim.Resource(system)["PowerState"])
		case <-tick.C:
		}
	}
	if got, err := c.PowerState(t.Context()); err != nil || got != want {
		t.Fatalf("simulator is %s, client reads %q, %v", simWant, got, err)
	}
}

func bootOf(t *testing.T, f *fixture) map[string]any {
	t.Helper()
	return f.sim.Resource("/redfish/v1/Systems/437XR1138R2")["Boot"].(map[string]any)
}

func TestBootOverride(t *testing.T) {
	f := newFixture(t, "public-rackmount1", redfishsim.Config{})
	c := f.client(t)
	// Start from disk so that PXE is a real change (the mock-up already shows Pxe/Once).
	if err := c.SetBootDevice(ctxT(t), bmc.BootDisk, bmc.BootOptions{Persistent: true, EFI: true}); err != nil {
		t.Fatal(err)
	}
	if b := bootOf(t, f); b["BootSourceOverrideTarget"] != "Hdd" || b["BootSourceOverrideEnabled"] != "Continuous" {
		t.Fatalf("boot after disk override = %v", b)
	}
	if err := c.SetBootDevice(ctxT(t), bmc.BootPXE, bmc.BootOptions{EFI: true}); err != nil {
		t.Fatal(err)
	}
	b := bootOf(t, f)
	if b["BootSourceOverrideTarget"] != "Pxe" || b["BootSourceOverrideEnabled"] != "Once" || b["BootSourceOverrideMode"] != "UEFI" {
		t.Fatalf("boot after one-time PXE override = %v", b)
	}
}

func TestBootOverrideIgnoredIsAnError(t *testing.T) {
	f := newFixture(t, "public-localstorage", redfishsim.Config{})
	c := f.client(t)
	if err := c.SetBootDevice(ctxT(t), bmc.BootDisk, bmc.BootOptions{EFI: true}); err != nil {
		t.Fatal(err)
	}
	f.sim.SetFaults(redfishsim.Faults{IgnoreBootOverride: true})
	err := c.SetBootDevice(ctxT(t), bmc.BootPXE, bmc.BootOptions{EFI: true})
	if !errors.Is(err, redfish.ErrOverrideIgnored) || !strings.Contains(err.Error(), "did not take") ||
		!strings.Contains(err.Error(), `want "Pxe"`) {
		t.Fatalf("err = %v, want ErrOverrideIgnored naming the target", err)
	}
	t.Log(err)
}

func TestBootOverrideRetriesWithoutMode(t *testing.T) {
	f := newFixture(t, "public-rackmount1", redfishsim.Config{})
	f.sim.SetFaults(redfishsim.Faults{RejectBootMode: true})
	c := f.client(t)
	if err := c.SetBootDevice(ctxT(t), bmc.BootCDROM, bmc.BootOptions{Mode: bmc.BootModeLegacy}); err != nil {
		t.Fatal(err)
	}
	if b := bootOf(t, f); b["BootSourceOverrideTarget"] != "Cd" || b["BootSourceOverrideMode"] != "UEFI" {
		t.Fatalf("boot = %v, want Cd with the mode left alone", b)
	}
	var patches []int
	for _, op := range f.sim.Ops() {
		if op.Method == http.MethodPatch {
			patches = append(patches, op.Status)
		}
	}
	if !slices.Equal(patches, []int{400, 204}) {
		t.Errorf("PATCH statuses = %v, want [400 204]", patches)
	}
}

func TestStaleETagIsRejected(t *testing.T) {
	f := newFixture(t, "public-rackmount1", redfishsim.Config{})
	sys := f.url + "/redfish/v1/Systems/437XR1138R2"
	do := func(method, etag, body string) *http.Response {
		req, _ := http.NewRequest(method, sys, strings.NewReader(body))
		req.SetBasicAuth(testUser, testPass)
		if etag != "" {
			req.Header.Set("If-Match", etag)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	old := do(http.MethodGet, "", "").Header.Get("ETag")
	body := `{"Boot":{"BootSourceOverrideTarget":"Hdd"}}`
	if r := do(http.MethodPatch, old, body); r.StatusCode != http.StatusNoContent {
		t.Fatalf("PATCH with current ETag: %d", r.StatusCode)
	}
	if now := do(http.MethodGet, "", "").Header.Get("ETag"); now == old {
		t.Fatal("ETag did not change with the boot override")
	}
	if r := do(http.MethodPatch, old, body); r.StatusCode != http.StatusPreconditionFailed {
		t.Fatalf("PATCH with stale ETag: %d, want 412", r.StatusCode)
	}
}

func TestOperationsSurviveFlakyBMC(t *testing.T) {
	f := newFixture(t, "public-rackmount1", redfishsim.Config{Seed: 42})
	f.sim.SetFaults(redfishsim.Faults{ErrorRate: 0.3})
	// Six attempts: with 30% failures per request, an operation of ~25 requests fails with four
	// attempts about one time in six; six make that negligible while still exercising retries.
	c := f.client(t, redfish.WithRetry(6, time.Millisecond))
	ctx := ctxT(t)
	if _, err := c.Inventory(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.SetBootDevice(ctx, bmc.BootPXE, bmc.BootOptions{EFI: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.Power(ctx, bmc.ActionOff); err != nil {
		t.Fatal(err)
	}
	waitPower(t, c, bmc.PowerOff)
	if err := c.Power(ctx, bmc.ActionOn); err != nil {
		t.Fatal(err)
	}
	waitPower(t, c, bmc.PowerOn)
	failed := 0
	for _, op := range f.sim.Ops() {
		if op.Status >= 500 {
			failed++
		}
	}
	if failed == 0 {
		t.Fatal("no injected errors were seen; the test proves nothing")
	}
	t.Logf("%d of %d requests failed and were retried", failed, len(f.sim.Ops()))
}

func TestDroppedConnectionsAreRetried(t *testing.T) {
	f := newFixture(t, "public-localstorage", redfishsim.Config{Seed: 7})
	f.sim.SetFaults(redfishsim.Faults{DropRate: 0.2})
	c := f.client(t, redfish.WithRetry(6, time.Millisecond))
	if _, err := c.Inventory(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	dropped := 0
	for _, op := range f.sim.Ops() {
		if op.Status == 0 {
			dropped++
		}
	}
	if dropped == 0 {
		t.Fatal("no connection was dropped; the test proves nothing")
	}
	t.Logf("%d of %d requests dropped and retried", dropped, len(f.sim.Ops()))
	f.sim.SetFaults(redfishsim.Faults{}) // let the cleanup logout through
}

func TestClientErrorsAreNotRetried(t *testing.T) {
	f := newFixture(t, "public-rackmount1", redfishsim.Config{})
	c := redfish.New(bmc.Endpoint{Address: f.ep.Address, Port: f.ep.Port, Scheme: "http", Username: testUser, Password: "wrong"}, fastOpts()...)
	_, err := c.PowerState(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "/redfish/v1/SessionService/Sessions") {
		t.Fatalf("err = %v, want a 401 naming the session path", err)
	}
	logins := 0
	for _, op := range f.sim.Ops() {
		if op.Method == http.MethodPost {
			logins++
		}
	}
	if logins != 1 {
		t.Errorf("login attempted %d times, want 1 (4xx must not be retried)", logins)
	}
	_ = c.Close(context.Background())
}

func TestSessionCapAndLeakingClients(t *testing.T) {
	f := newFixture(t, "public-rackmount1", redfishsim.Config{MaxSessions: 3})
	var leaked []*redfish.Client
	t.Cleanup(func() {
		for _, c := range leaked {
			_ = c.Close(context.Background())
		}
	})
	for i := range 3 {
		c := redfish.New(f.ep, fastOpts()...)
		leaked = append(leaked, c)
		if _, err := c.PowerState(ctxT(t)); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	c := redfish.New(f.ep, fastOpts()...)
	leaked = append(leaked, c)
	_, err := c.PowerState(ctxT(t))
	if !errors.Is(err, redfish.ErrSessionLimit) || !strings.Contains(err.Error(), "session limit") {
		t.Fatalf("err = %v, want ErrSessionLimit", err)
	}
	t.Log(err)
	if f.sim.OpenSessions() != 3 || f.sim.PeakSessions() != 3 {
		t.Errorf("open %d peak %d, want 3 and 3", f.sim.OpenSessions(), f.sim.PeakSessions())
	}
	// Freeing one session lets the refused client in: the cap, not the client, was the problem.
	if err := leaked[0].Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PowerState(ctxT(t)); err != nil {
		t.Fatalf("after a logout: %v", err)
	}
}

func TestCloseWithCancelledContextStillLogsOut(t *testing.T) {
	f := newFixture(t, "public-rackmount1", redfishsim.Config{})
	c := redfish.New(f.ep, fastOpts()...)
	ctx, cancel := context.WithCancel(t.Context())
	if _, err := c.PowerState(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.sim.OpenSessions(); n != 0 {
		t.Fatalf("%d sessions open after Close with a cancelled context", n)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestTimeoutDuringLoginStillLogsOut(t *testing.T) {
	f := newFixture(t, "public-rackmount1", redfishsim.Config{})
	err := redfish.WithSession(t.Context(), f.ep, func(c *redfish.Client) error {
		// Log in and out once so that the service root and system are cached and the timed call
		// below sends nothing but the login.
		if _, err := c.PowerState(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		f.sim.SetFaults(redfishsim.Faults{Latency: 700 * time.Millisecond})
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		_, err := c.PowerState(ctx) // the BMC creates the session after the caller gave up
		return err
	}, fastOpts()...)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	var logins, logouts int
	for _, op := range f.sim.Ops() {
		switch {
		case op.Method == http.MethodPost && op.Status == http.StatusCreated:
			logins++
		case op.Method == http.MethodDelete && op.Status == http.StatusNoContent:
			logouts++
		}
	}
	if logins != 2 || logouts != 2 || f.sim.OpenSessions() != 0 {
		t.Fatalf("logins %d logouts %d open %d: the session created during the timed-out login must be logged out",
			logins, logouts, f.sim.OpenSessions())
	}
}

func TestWithSessionClosesOnError(t *testing.T) {
	f := newFixture(t, "public-localstorage", redfishsim.Config{})
	boom := errors.New("boom")
	err := redfish.WithSession(ctxT(t), f.ep, func(c *redfish.Client) error {
		if _, err := c.PowerState(ctxT(t)); err != nil {
			return err
		}
		return boom
	}, fastOpts()...)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if f.sim.OpenSessions() != 0 || f.sim.PeakSessions() != 1 {
		t.Fatalf("open %d peak %d", f.sim.OpenSessions(), f.sim.PeakSessions())
	}
}

func TestBasicAuthFallback(t *testing.T) {
	f := newFixture(t, "public-rackmount1", redfishsim.Config{DisableSessionService: true})
	c := f.client(t)
	if st, err := c.PowerState(ctxT(t)); err != nil || st != bmc.PowerOn {
		t.Fatalf("PowerState = %q, %v", st, err)
	}
	if f.sim.PeakSessions() != 0 {
		t.Fatal("a session was created although the session service is disabled")
	}
}

func TestResetBMC(t *testing.T) {
	f := newFixture(t, "public-localstorage", redfishsim.Config{})
	c := f.client(t)
	if err := c.ResetBMC(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if f.sim.ManagerResets() != 1 || !slices.Contains(resetTypes(f), "GracefulRestart") {
		t.Fatalf("manager resets %d, reset types %v", f.sim.ManagerResets(), resetTypes(f))
	}
	if f.sim.Resource("/redfish/v1/Managers/BMC")["LastResetTime"] == nil {
		t.Error("manager reset not persisted")
	}
	// The BMC dropped all sessions while restarting; the client must log in again transparently.
	if _, err := c.PowerState(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

func TestVirtualMedia(t *testing.T) {
	for _, mockup := range mockups {
		t.Run(mockup, func(t *testing.T) {
			f := newFixture(t, mockup, redfishsim.Config{})
			c := f.client(t)
			const img = "http://192.0.2.10/images/installer.iso"
			if err := c.InsertMedia(ctxT(t), img); err != nil {
				t.Fatal(err)
			}
			var cd string
			for _, op := range f.sim.Ops() {
				if op.Method == http.MethodPatch {
					cd = op.Path
				}
			}
			if cd == "" || !strings.HasSuffix(cd, "/CD1") {
				t.Fatalf("media PATCHed at %q, want the first CD slot", cd)
			}
			if vm := f.sim.Resource(cd); vm["Image"] != img || vm["Inserted"] != true {
				t.Fatalf("after insert: %v", vm)
			}
			if err := c.EjectMedia(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			if vm := f.sim.Resource(cd); vm["Image"] != nil || vm["Inserted"] != false {
				t.Fatalf("after eject: %v", vm)
			}
			if err := c.EjectMedia(ctxT(t)); err != nil {
				t.Fatalf("ejecting an empty drive: %v", err)
			}
		})
	}
}

func TestConcurrentClientsShareTheBMC(t *testing.T) {
	f := newFixture(t, "public-rackmount1", redfishsim.Config{MaxSessions: 4})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			errs <- redfish.WithSession(ctxT(t), f.ep, func(c *redfish.Client) error {
				_, err := c.PowerState(ctxT(t))
				return err
			}, fastOpts()...)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if f.sim.PeakConcurrent() < 1 {
		t.Error("no concurrency recorded")
	}
}

// Some BMCs answer 409 to On while the system is on; bmc.Controller promises no error then.
func TestPowerOnWhenOnIsNotAnError(t *testing.T) {
	f := newFixture(t, "public-rackmount1", redfishsim.Config{})
	inner := f.sim.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/ComputerSystem.Reset") {
			b, _ := io.ReadAll(r.Body)
			if strings.Contains(string(b), `"On"`) && f.sim.Resource(r.URL.Path[:strings.Index(r.URL.Path, "/Actions")])["PowerState"] == "On" {
				http.Error(w, `{"error":{"message":"system is already on"}}`, http.StatusConflict)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	ep := f.ep
	ep.Port, _ = strconv.Atoi(u.Port())
	err := redfish.WithSession(ctxT(t), ep, func(c *redfish.Client) error {
		return c.Power(ctxT(t), bmc.ActionOn)
	}, fastOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	if got := resetTypes(f); len(got) != 0 {
		t.Fatalf("the On reset reached the simulator (%v); the 409 path was not exercised", got)
	}
}

// A BMC that forgets sessions (restart, idle timeout) answers 401; the client logs in again.
func TestExpiredSessionIsRenewed(t *testing.T) {
	f := newFixture(t, "public-localstorage", redfishsim.Config{})
	c := f.client(t)
	if _, err := c.PowerState(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, f.url+"/redfish/v1/Managers/BMC/Actions/Manager.Reset", strings.NewReader(`{"ResetType":"ForceRestart"}`))
	req.SetBasicAuth(testUser, testPass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("out-of-band manager reset: %v %v", resp, err)
	}
	resp.Body.Close()
	if _, err := c.PowerState(ctxT(t)); err != nil {
		t.Fatalf("after the BMC dropped the session: %v", err)
	}
	if f.sim.PeakSessions() != 1 || f.sim.OpenSessions() != 1 {
		t.Errorf("peak %d open %d, want one renewed session", f.sim.PeakSessions(), f.sim.OpenSessions())
	}
}

func TestTLS(t *testing.T) {
	f := newFixture(t, "public-rackmount1", redfishsim.Config{})
	srv := httptest.NewTLSServer(f.sim.Handler())
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	ep := f.ep
	ep.Scheme = "https"
	ep.Port, _ = strconv.Atoi(u.Port())

	strict := redfish.New(ep, fastOpts()...)
	_, err := strict.PowerState(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("self-signed certificate accepted without Insecure: %v", err)
	}
	_ = strict.Close(ctxT(t))

	ep.Insecure = true
	err = redfish.WithSession(ctxT(t), ep, func(c *redfish.Client) error {
		_, err := c.PowerState(ctxT(t))
		return err
	}, fastOpts()...)
	if err != nil {
		t.Fatal(err)
	}
}
