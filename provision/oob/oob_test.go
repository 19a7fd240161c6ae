package oob_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prybar/prybar/ent/disk"
	"github.com/prybar/prybar/ent/nic"
	"github.com/prybar/prybar/provision/bmc"
	"github.com/prybar/prybar/provision/oob"
	"github.com/prybar/prybar/provision/redfish"
	"github.com/prybar/prybar/provision/redfish/redfishsim"
	"github.com/prybar/prybar/scheduler/executor"
)

var mockups = []string{"public-rackmount1", "public-localstorage"}

// The inventory read through the executor lands on the machine: compared with the mock-up JSON
// the simulator serves, not with literals.
func TestInventoryLandsOnMachine(t *testing.T) {
	for _, mockup := range mockups {
		t.Run(mockup, func(t *testing.T) {
			f := newRedfish(t, mockup, redfishsim.Config{})
			st := openStore(t)
			id := newMachine(t, st, "node1.example.com")
			e := oob.New(fastConfig(st))
			ctx := ctxT(t)
			res, err := runCommit(ctx, e, st, input(id, "node1.example.com", f.bmc, map[string]any{"action": "inventory"}))
			if err != nil {
				t.Fatalf("run: %v\nlog:\n%s", err, res.Log)
			}
			sys := f.mock(t, f.systemPath(t))
			m, err := st.Client.Machine.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if !m.Alive || m.Vendor != str(sys["Manufacturer"]) || m.Model != str(sys["Model"]) || m.Serial != str(sys["SerialNumber"]) ||
				!strings.EqualFold(m.UUID, str(sys["UUID"])) || m.Vendor == "" {
				t.Errorf("machine = alive %t vendor %q model %q serial %q uuid %q; mock-up %v %v %v %v",
					m.Alive, m.Vendor, m.Model, m.Serial, m.UUID, sys["Manufacturer"], sys["Model"], sys["SerialNumber"], sys["UUID"])
			}
			var cpus int
			for _, p := range f.members(t, sys["Processors"].(map[string]any)["@odata.id"].(string)) {
				state, _ := p["Status"].(map[string]any)["State"].(string)
				if state != "Absent" && (str(p["ProcessorType"]) == "" || str(p["ProcessorType"]) == "CPU") {
					cpus++
				}
			}
			if m.CPUCount != cpus || cpus == 0 {
				t.Errorf("cpu_count = %d, mock-up has %d installed CPUs", m.CPUCount, cpus)
			}
			gib, _ := sys["MemorySummary"].(map[string]any)["TotalSystemMemoryGiB"].(interface{ Float64() (float64, error) }).Float64()
			if want := int64(math.Round(gib * (1 << 30))); m.MemoryBytes != want || want == 0 {
				t.Errorf("memory_bytes = %d, want %d", m.MemoryBytes, want)
			}
			if m.Discovery["bmc"] == nil {
				t.Errorf("discovery JSON lacks the bmc key: %v", m.Discovery)
			}

			var wantMACs []string
			for _, n := range f.members(t, sys["EthernetInterfaces"].(map[string]any)["@odata.id"].(string)) {
				// Physical host interfaces only: not the host-to-BMC interface, not virtual ones.
				links, _ := n["Links"].(map[string]any)
				if str(n["EthernetInterfaceType"]) == "Virtual" || links["HostInterface"] != nil {
					continue
				}
				if mac := strings.ToLower(str(n["MACAddress"])); mac != "" && !slices.Contains(wantMACs, mac) {
					wantMACs = append(wantMACs, mac)
				}
			}
			nics, err := st.Client.NIC.Query().Where(nic.MachineID(id)).All(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var gotMACs []string
			for _, n := range nics {
				gotMACs = append(gotMACs, n.MAC)
			}
			slices.Sort(wantMACs)
			slices.Sort(gotMACs)
			if len(wantMACs) == 0 || !slices.Equal(gotMACs, wantMACs) {
				t.Errorf("NIC MACs = %v, mock-up %v", gotMACs, wantMACs)
			}

			// Disks: sizes of present drives (Storage model) or SimpleStorage devices.
			var want []int64
			if sto, ok := sys["Storage"].(map[string]any); ok {
				seen := map[string]bool{}
				for _, s := range f.members(t, sto["@odata.id"].(string)) {
					for _, l := range s["Drives"].([]any) {
						d := f.mock(t, l.(map[string]any)["@odata.id"].(string))
						if seen[str(d["SerialNumber"])] {
							continue
						}
						seen[str(d["SerialNumber"])] = true
						want = append(want, num(t, d["CapacityBytes"]))
					}
				}
			} else {
				for _, s := range f.members(t, sys["SimpleStorage"].(map[string]any)["@odata.id"].(string)) {
					for _, dv := range s["Devices"].([]any) {
						d := dv.(map[string]any)
						if state, _ := d["Status"].(map[string]any)["State"].(string); state != "Absent" {
							want = append(want, num(t, d["CapacityBytes"]))
						}
					}
				}
			}
			disks, err := st.Client.Disk.Query().Where(disk.MachineID(id)).All(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, d := range disks {
				got = append(got, d.SizeBytes)
			}
			slices.Sort(want)
			slices.Sort(got)
			if len(want) == 0 || !slices.Equal(got, want) {
				t.Errorf("disk sizes = %v, mock-up %v", got, want)
			}
			inv, _ := res.Output[oob.OutputInventory].(map[string]any)
			if inv == nil || inv["cpu_count"] != cpus {
				t.Errorf("output inventory = %v", res.Output)
			}

			// Running discovery again updates in place: no duplicate NICs or disks.
			if _, err := runCommit(ctx, e, st, input(id, "node1.example.com", f.bmc, map[string]any{"action": "inventory"})); err != nil {
				t.Fatal(err)
			}
			if n, _ := st.Client.NIC.Query().Count(ctx); n != len(wantMACs) {
				t.Errorf("after a second discovery: %d NICs, want %d", n, len(wantMACs))
			}
			if n, _ := st.Client.Disk.Query().Count(ctx); n != len(want) {
				t.Errorf("after a second discovery: %d disks, want %d", n, len(want))
			}
		})
	}
}

// A MAC already recorded on another machine is a conflict, not a silent move.
func TestInventoryMACConflict(t *testing.T) {
	f := newRedfish(t, "public-rackmount1", redfishsim.Config{})
	st := openStore(t)
	a := newMachine(t, st, "a.example.com")
	b := newMachine(t, st, "b.example.com")
	e := oob.New(fastConfig(st))
	ctx := ctxT(t)
	if _, err := runCommit(ctx, e, st, input(a, "a.example.com", f.bmc, map[string]any{"action": "inventory"})); err != nil {
		t.Fatal(err)
	}
	_, err := runCommit(ctx, e, st, input(b, "b.example.com", f.bmc, map[string]any{"action": "inventory"}))
	if err == nil || !strings.Contains(err.Error(), "recorded on machine") {
		t.Fatalf("err = %v, want a MAC conflict", err)
	}
}

func simPower(f *rfBMC, t *testing.T) string {
	return str(f.sim.Resource(f.systemPath(t))["PowerState"])
}

// TestPowerActionsReachState runs each power action to its confirmed end state. Like the redfish
// client's copy it has no wall-clock deadline that load could exceed: the executor's settle
// timeout and the client's cycle poll are a day, so only the test's context (go test -timeout)
// bounds the waits; the executor returns when the BMC reports the state. Whether the cycle went
// through its off phase is read from the simulator's record (a boot is an off → on transition),
// not from off_phase_seen: that is the executor's best-effort observation within CycleOffWindow,
// which a poll delayed past the simulator's short off phase (under load) legitimately misses.
// It once failed under load with the former 5 s deadlines; the "slow" case reproduces load with a
// BMC that answers every request 250 ms late (longer than the simulator's off phase), where the
// former off_phase_seen assertion failed every time.
func TestPowerActionsReachState(t *testing.T) {
	for _, mockup := range append(slices.Clone(mockups), "slow") {
		t.Run(mockup, func(t *testing.T) {
			var faults redfishsim.Faults
			if mockup == "slow" {
				mockup, faults = mockups[0], redfishsim.Faults{Latency: 250 * time.Millisecond}
			}
			f := newRedfish(t, mockup, redfishsim.Config{})
			f.sim.SetFaults(faults)
			cfg := fastConfig(nil)
			cfg.SettleTimeout = 24 * time.Hour
			cfg.RedfishOptions = append(cfg.RedfishOptions, redfish.WithPowerPoll(10*time.Millisecond, 24*time.Hour))
			e := oob.New(cfg)
			ctx := t.Context()
			run := func(action string) executor.Result {
				t.Helper()
				res, err := e.Run(ctx, input(1, "n.example.com", f.bmc, map[string]any{"action": action}))
				if err != nil {
					t.Fatalf("%s: %v\n%s", action, err, res.Log)
				}
				return res
			}
			res := run("power-off")
			if got := simPower(f, t); got != "Off" || res.Output["bmc"].(map[string]any)["power"] != "off" {
				t.Fatalf("after power-off: sim %q, output %v", got, res.Output)
			}
			run("power-off") // already off: no reset sent
			res = run("power-on")
			if got := simPower(f, t); got != "On" || res.Output["bmc"].(map[string]any)["power"] != "on" {
				t.Fatalf("after power-on: sim %q, output %v", got, res.Output)
			}
			before := len(f.sim.Ops())
			boots := len(f.sim.Boots(f.systemPath(t)))
			res = run("power-cycle")
			if got := simPower(f, t); got != "On" {
				t.Fatalf("after power-cycle: sim %q", got)
			}
			out := res.Output["bmc"].(map[string]any)
			if out["cycled"] != true {
				t.Errorf("cycle output %v", out)
			}
			if n := len(f.sim.Boots(f.systemPath(t))) - boots; n != 1 {
				t.Errorf("the cycle booted the machine %d times, want 1 (off, then on)", n)
			}
			t.Logf("off phase seen by the executor's poll: %v", out["off_phase_seen"])
			var resets []string
			for _, op := range f.sim.Ops()[before:] {
				if op.ResetType != "" {
					resets = append(resets, op.ResetType)
				}
			}
			if len(resets) == 0 {
				t.Errorf("no reset reached the simulator during power-cycle")
			}
			resets = resets[:0]
			for _, op := range f.sim.Ops() {
				if op.ResetType != "" {
					resets = append(resets, op.ResetType)
				}
			}
			// power-off, power-on, cycle: the second power-off sent nothing.
			if len(resets) < 3 || resets[0] != "ForceOff" || resets[1] == "ForceOff" {
				t.Errorf("resets = %v", resets)
			}
		})
	}
}

// One-time PXE override: set, read back by the client, visible in the simulator, then the
// machine is booted (powered on when off, cycled when on).
func TestPXEBootOnce(t *testing.T) {
	for _, mockup := range mockups {
		t.Run(mockup, func(t *testing.T) {
			f := newRedfish(t, mockup, redfishsim.Config{})
			e := oob.New(fastConfig(nil))
			ctx := ctxT(t)
			if _, err := e.Run(ctx, input(1, "n.example.com", f.bmc, map[string]any{"action": "power-off"})); err != nil {
				t.Fatal(err)
			}
			// The mock-ups start with a PXE override already set; move it away first so the test
			// sees the executor's effect. boot: false sets the device without rebooting.
			if _, err := e.Run(ctx, input(1, "n.example.com", f.bmc, map[string]any{"action": "boot-device", "device": "disk", "persistent": true, "boot": false})); err != nil {
				t.Fatal(err)
			}
			if boot := f.sim.Resource(f.systemPath(t))["Boot"].(map[string]any); boot["BootSourceOverrideTarget"] != "Hdd" || boot["BootSourceOverrideEnabled"] != "Continuous" || simPower(f, t) != "Off" {
				t.Fatalf("after disk/persistent/no boot: %v, power %s", boot, simPower(f, t))
			}
			res, err := e.Run(ctx, input(1, "n.example.com", f.bmc, map[string]any{"action": "boot-device", "device": "pxe", "persistent": false, "efi": false}))
			if err != nil {
				t.Fatalf("%v\n%s", err, res.Log)
			}
			// The machine came on from PXE, and that boot consumed the one-time override (as on
			// real BMCs: Enabled reverts to Disabled).
			boots := f.sim.Boots(f.systemPath(t))
			if len(boots) == 0 || boots[len(boots)-1].Target != "Pxe" || boots[len(boots)-1].Enabled != "Once" {
				t.Fatalf("boots = %+v, want the last from Pxe/Once", boots)
			}
			boot := f.sim.Resource(f.systemPath(t))["Boot"].(map[string]any)
			if boot["BootSourceOverrideTarget"] != "Pxe" || boot["BootSourceOverrideEnabled"] != "Disabled" || boot["BootSourceOverrideMode"] != "UEFI" {
				t.Fatalf("boot = %v, want the one-time override consumed and the UEFI mode kept", boot)
			}
			if simPower(f, t) != "On" {
				t.Fatalf("machine not powered on after boot-device")
			}
			out := res.Output["bmc"].(map[string]any)
			if out["boot_device"] != "pxe" || out["power"] != "on" || out["cycled"] == true {
				t.Fatalf("output %v", out)
			}
			// On a machine that is on: the override, then a cycle.
			res, err = e.Run(ctx, input(1, "n.example.com", f.bmc, map[string]any{"action": "pxe-boot-once"}))
			if err != nil {
				t.Fatalf("%v\n%s", err, res.Log)
			}
			if out := res.Output["bmc"].(map[string]any); out["cycled"] != true || out["power"] != "on" {
				t.Fatalf("output %v", out)
			}
		})
	}
}

func TestIgnoredBootOverrideFails(t *testing.T) {
	f := newRedfish(t, "public-rackmount1", redfishsim.Config{})
	e := oob.New(fastConfig(nil))
	// The mock-up starts with Pxe/Once; make the override differ first, or an ignored PATCH
	// would read back as the wanted value.
	if _, err := e.Run(ctxT(t), input(1, "n.example.com", f.bmc, map[string]any{"action": "boot-device", "device": "disk", "boot": false})); err != nil {
		t.Fatal(err)
	}
	f.sim.SetFaults(redfishsim.Faults{IgnoreBootOverride: true})
	before := simPower(f, t)
	_, err := e.Run(ctxT(t), input(1, "n.example.com", f.bmc, map[string]any{"action": "boot-device"}))
	if err == nil || !strings.Contains(err.Error(), "did not take") {
		t.Fatalf("err = %v, want the override-did-not-take error", err)
	}
	for _, op := range f.sim.Ops() {
		if op.ResetType != "" {
			t.Fatalf("a reset (%s) was sent although the override did not take", op.ResetType)
		}
	}
	if simPower(f, t) != before {
		t.Fatal("power changed")
	}
}

// 30% of requests answered 5xx: every operation still succeeds through the client's retries.
func TestFlakyBMC(t *testing.T) {
	f := newRedfish(t, "public-localstorage", redfishsim.Config{Seed: 7})
	f.sim.SetFaults(redfishsim.Faults{ErrorRate: 0.3})
	st := openStore(t)
	id := newMachine(t, st, "flaky.example.com")
	e := oob.New(fastConfig(st))
	ctx := ctxT(t)
	for _, a := range []string{"inventory", "power-off", "power-on", "power-cycle", "boot-device"} {
		if res, err := runCommit(ctx, e, st, input(id, "flaky.example.com", f.bmc, map[string]any{"action": a})); err != nil {
			t.Fatalf("%s: %v\n%s", a, err, res.Log)
		}
	}
	var errs int
	for _, op := range f.sim.Ops() {
		if op.Status >= 500 {
			errs++
		}
	}
	if errs == 0 {
		t.Fatal("no 5xx was injected")
	}
	t.Logf("%d of %d requests answered 5xx", errs, len(f.sim.Ops()))
}

// fake is a controller with scripted answers.
type fake struct {
	mu     sync.Mutex
	state  bmc.PowerState
	err    error
	powers []bmc.PowerAction
	closed int
	delay  time.Duration
	active *atomic.Int64
	peak   *atomic.Int64
}

func (c *fake) enter() func() {
	if c.active == nil {
		return func() {}
	}
	n := c.active.Add(1)
	for p := c.peak.Load(); n > p && !c.peak.CompareAndSwap(p, n); p = c.peak.Load() {
	}
	time.Sleep(c.delay)
	return func() { c.active.Add(-1) }
}

func (c *fake) PowerState(context.Context) (bmc.PowerState, error) {
	defer c.enter()()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state, c.err
}

func (c *fake) Power(_ context.Context, a bmc.PowerAction) error {
	defer c.enter()()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.powers = append(c.powers, a)
	switch a {
	case bmc.ActionOn:
		c.state = bmc.PowerOn
	case bmc.ActionOff:
		c.state = bmc.PowerOff
	}
	return nil
}

func (c *fake) SetBootDevice(context.Context, bmc.BootDevice, bmc.BootOptions) error { return nil }
func (c *fake) ResetBMC(context.Context) error                                       { return nil }
func (c *fake) Close(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed++
	return nil
}

// An unreadable power state fails every action and never leads to a power command; the
// controller is closed anyway.
func TestUnknownPowerStateNeverActs(t *testing.T) {
	for _, a := range []string{"power-on", "power-off", "power-cycle", "boot-device", "inventory"} {
		c := &fake{err: fmt.Errorf("garbled answer: %w", bmc.ErrUnknownPowerState)}
		cfg := fastConfig(nil)
		cfg.Dial = func(bmc.Endpoint) (bmc.Controller, error) { return c, nil }
		e := oob.New(cfg)
		_, err := e.Run(ctxT(t), input(1, "n.example.com", &executor.BMC{Protocol: "ipmi", Address: "192.0.2.1"}, map[string]any{"action": a}))
		if !errors.Is(err, bmc.ErrUnknownPowerState) {
			t.Errorf("%s: err = %v, want ErrUnknownPowerState", a, err)
		}
		if len(c.powers) != 0 || c.closed != 1 {
			t.Errorf("%s: power commands %v, closed %d times", a, c.powers, c.closed)
		}
	}
}

// A power command the BMC accepts but never carries out times out with a clear error.
func TestPostConditionTimeout(t *testing.T) {
	c := &fake{state: bmc.PowerOff}
	cfg := fastConfig(nil)
	cfg.SettleTimeout = 100 * time.Millisecond
	cfg.Dial = func(bmc.Endpoint) (bmc.Controller, error) { return stuck{c}, nil }
	e := oob.New(cfg)
	_, err := e.Run(ctxT(t), input(1, "n.example.com", &executor.BMC{Protocol: "ipmi", Address: "192.0.2.1"}, map[string]any{"action": "power-on"}))
	if err == nil || !strings.Contains(err.Error(), "not on after") || c.closed != 1 {
		t.Fatalf("err = %v, closed %d", err, c.closed)
	}
}

type stuck struct{ *fake }

func (s stuck) Power(context.Context, bmc.PowerAction) error { return nil }

func TestInputErrors(t *testing.T) {
	e := oob.New(fastConfig(nil))
	ctx := ctxT(t)
	if _, err := e.Run(ctx, input(1, "n.example.com", nil, map[string]any{"action": "power-on"})); !errors.Is(err, oob.ErrNoBMC) {
		t.Errorf("no BMC: %v", err)
	}
	b := &executor.BMC{Protocol: "ipmi", Address: "192.0.2.1"}
	for _, attrs := range []map[string]any{{}, {"action": "explode"}, {"action": "boot-device", "device": "floppy"}, {"action": "boot-device", "efi": "yes"}} {
		if _, err := e.Run(ctx, input(1, "n.example.com", b, attrs)); err == nil {
			t.Errorf("attrs %v: no error", attrs)
		}
	}
	if k := e.ConcurrencyKey(input(1, "n", b, nil)); k != "bmc:192.0.2.1:623" {
		t.Errorf("key %q", k)
	}
}

// Many concurrent runs against one BMC never overlap, neither in the executor's own counters
// nor as seen by the simulator (requests and sessions).
func TestConcurrentRunsOneBMC(t *testing.T) {
	f := newRedfish(t, "public-rackmount1", redfishsim.Config{PowerDelay: 5 * time.Millisecond})
	e := oob.New(fastConfig(nil))
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, 24)
	for i := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := []string{"power-on", "power-off", "inventory"}[i%3]
			if _, err := e.Run(ctx, input(1, "n.example.com", f.bmc, map[string]any{"action": a})); err != nil {
				errs <- fmt.Errorf("%s: %w", a, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	key := fmt.Sprintf("%s:%d", f.bmc.Address, f.bmc.Port)
	s := e.Stats(key)
	if s.Runs != 24 || s.PeakActive != 1 || s.Waits == 0 {
		t.Errorf("stats %+v, want 24 runs, peak 1, some waits", s)
	}
	if p := f.sim.PeakSessions(); p != 1 {
		t.Errorf("simulator peak sessions %d, want 1", p)
	}
	if p := f.sim.PeakConcurrent(); p != 1 {
		t.Errorf("simulator peak concurrent requests %d, want 1", p)
	}
}

// A run waiting for the BMC lock gives up when its context ends.
func TestLockWaitHonoursContext(t *testing.T) {
	release := make(chan struct{})
	c := &fake{state: bmc.PowerOn}
	cfg := fastConfig(nil)
	cfg.Dial = func(bmc.Endpoint) (bmc.Controller, error) { return blocking{c, release}, nil }
	e := oob.New(cfg)
	b := &executor.BMC{Protocol: "ipmi", Address: "192.0.2.1"}
	done := make(chan error, 1)
	go func() {
		_, err := e.Run(context.Background(), input(1, "n", b, map[string]any{"action": "power-on"}))
		done <- err
	}()
	for e.Stats("192.0.2.1:623").Active == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := e.Run(ctx, input(1, "n", b, map[string]any{"action": "power-on"}))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waiting for another operation") {
		t.Fatalf("err = %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type blocking struct {
	*fake
	release chan struct{}
}

func (b blocking) PowerState(ctx context.Context) (bmc.PowerState, error) {
	<-b.release
	return b.fake.PowerState(ctx)
}

func TestApplied(t *testing.T) {
	c := &fake{state: bmc.PowerOn}
	cfg := fastConfig(nil)
	cfg.Dial = func(bmc.Endpoint) (bmc.Controller, error) { return c, nil }
	e := oob.New(cfg)
	b := &executor.BMC{Protocol: "ipmi", Address: "192.0.2.1"}
	ctx := ctxT(t)
	if ok, _, err := e.Applied(ctx, input(1, "n", b, map[string]any{"action": "power-on"})); !ok || err != nil {
		t.Errorf("power-on while on: %t %v", ok, err)
	}
	if ok, _, err := e.Applied(ctx, input(1, "n", b, map[string]any{"action": "power-off"})); ok || err != nil {
		t.Errorf("power-off while on: %t %v", ok, err)
	}
	if _, _, err := e.Applied(ctx, input(1, "n", b, map[string]any{"action": "power-cycle"})); err == nil {
		t.Error("power-cycle: no error")
	}
	if len(c.powers) != 0 {
		t.Errorf("Applied sent power commands %v", c.powers)
	}
}
