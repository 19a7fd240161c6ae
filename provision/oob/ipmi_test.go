package oob_test

import (
	"strings"
	"testing"

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
