package oob_test

import (
	"strings"
	"testing"

	"github.com/prybar/prybar/provision/ipmi/ipmisim"
	"github.com/prybar/prybar/provision/ipmi/ipmisimtest"
	"github.com/prybar/prybar/provision/oob"
	"github.com/prybar/prybar/scheduler/executor"
)

// Power on/off/status and a PXE boot override through the executor against the real ipmi_sim,
// each confirmed by an independent client (ipmitool -I lanplus -C 3) and by what reached the
// simulated chassis.
func TestRealIPMISim(t *testing.T) {
	sim := ipmisimtest.Start(t)
	e := oob.New(fastConfig(nil))
	ctx := ctxT(t)
	b := &executor.BMC{Protocol: "IPMI", Address: sim.Host, Port: sim.Port, Username: sim.User, Password: sim.Pass}
	run := func(attrs map[string]any) executor.Result {
		t.Helper()
		res, err := e.Run(ctx, input(1, "ipmi.example.com", b, attrs))
		if err != nil {
			t.Fatalf("%v: %v\n%s", attrs, err, res.Log)
		}
		return res
	}

	res := run(map[string]any{"action": "inventory"})
	if p := res.Output["bmc"].(map[string]any)["power"]; p != "off" {
		t.Fatalf("inventory power %v", p)
	}
	run(map[string]any{"action": "power-on"})
	if out := sim.Ipmitool(t, "chassis", "power", "status"); !strings.Contains(out, "Chassis Power is on") || sim.Power() != "on" {
		t.Fatalf("after power-on: ipmitool %q, chassis %q", out, sim.Power())
	}
	run(map[string]any{"action": "power-off"})
	if out := sim.Ipmitool(t, "chassis", "power", "status"); !strings.Contains(out, "Chassis Power is off") || sim.Power() != "off" {
		t.Fatalf("after power-off: ipmitool %q, chassis %q", out, sim.Power())
	}
	// Set PXE without booting, so the override is still pending when ipmitool reads it.
	res = run(map[string]any{"action": "boot-device", "device": "pxe", "boot": false})
	if out := sim.Ipmitool(t, "chassis", "bootparam", "get", "5"); !strings.Contains(out, "Force PXE") || sim.BootDevice() != "pxe" {
		t.Fatalf("boot: ipmitool:\n%s\nchassis %q", out, sim.BootDevice())
	}
	if res.Output["bmc"].(map[string]any)["boot_device"] != "pxe" {
		t.Fatalf("output %v", res.Output)
	}
	// Then the full pxe-boot-once: override, and power on since the machine is off.
	run(map[string]any{"action": "pxe-boot-once"})
	if out := sim.Ipmitool(t, "chassis", "power", "status"); !strings.Contains(out, "Chassis Power is on") {
		t.Fatalf("after pxe-boot-once: %q", out)
	}
	want := []string{"set power 1", "set power 0", "set boot pxe", "set boot pxe", "set power 1"}
	if got := sim.Log(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("chassis log %q, want %q", got, want)
	}
}

// bmc-discover on an IPMI-only machine records the BMC's system GUID as the machine's UUID (the
// identity the discovery agent's DMI report is matched by), decoded as ipmitool decodes it.
func TestRealIPMISimGUIDIsMachineUUID(t *testing.T) {
	const uuid = "5a0c8f3e-1d2b-4e6f-8a9b-0c1d2e3f4a5b"
	sim := ipmisimtest.Start(t, ipmisimtest.Options{GUID: "3e8f0c5a2b1d6f4e8a9b0c1d2e3f4a5b"}) // its SMBIOS bytes
	st := openStore(t)
	id := newMachine(t, st, "ipmi-only.example.com")
	b := &executor.BMC{Protocol: "IPMI", Address: sim.Host, Port: sim.Port, Username: sim.User, Password: sim.Pass}
	ctx := ctxT(t)
	res, err := runCommit(ctx, oob.New(fastConfig(st)), st, input(id, "ipmi-only.example.com", b, map[string]any{"action": "inventory"}))
	if err != nil {
		t.Fatalf("%v\n%s", err, res.Log)
	}
	if got := str(res.Output["inventory"].(map[string]any)["uuid"]); got != uuid {
		t.Errorf("inventory output uuid %q, want %q", got, uuid)
	}
	m, err := st.Client.Machine.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if m.UUID != uuid || !m.Alive {
		t.Errorf("machine uuid %q alive %t, want %q and alive", m.UUID, m.Alive, uuid)
	}
	if out := sim.Ipmitool(t, "mc", "guid"); !strings.Contains(out, uuid) {
		t.Errorf("ipmitool mc guid disagrees:\n%s", out)
	}
}

// A BMC without Get System GUID (go-ipmi's BMC server answers C1h, invalid command) is still
// discovered: the UUID stays empty and the log says why.
func TestIPMIWithoutGUIDStillDiscovers(t *testing.T) {
	sim := ipmisim.New(ipmisim.Config{})
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	ep := sim.Endpoint()
	b := &executor.BMC{Protocol: "IPMI", Address: ep.Address, Port: ep.Port, Username: ep.Username, Password: ep.Password}
	res, err := oob.New(fastConfig(nil)).Run(ctxT(t), input(1, "old-bmc.example.com", b, map[string]any{"action": "inventory"}))
	if err != nil {
		t.Fatalf("%v\n%s", err, res.Log)
	}
	if u := str(res.Output["inventory"].(map[string]any)["uuid"]); u != "" || !strings.Contains(res.Log, "no system GUID (the BMC answered completion code 0xc1)") {
		t.Errorf("uuid %q, log:\n%s", u, res.Log)
	}
}
