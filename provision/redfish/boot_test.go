package redfish_test

import (
	"testing"
	"time"

	"github.com/prybar/prybar/provision/bmc"
	"github.com/prybar/prybar/provision/redfish/redfishsim"
)

// Issue 7, point 6: setting a boot device must not change the boot mode unless asked to. The
// mock-up's system boots UEFI.
func TestBootOverrideKeepsTheBootMode(t *testing.T) {
	f := newFixture(t, "public-rackmount1", redfishsim.Config{})
	c := f.client(t)
	if m := bootOf(t, f)["BootSourceOverrideMode"]; m != "UEFI" {
		t.Fatalf("mock-up boot mode = %v, want UEFI", m)
	}
	if err := c.SetBootDevice(ctxT(t), bmc.BootPXE, bmc.BootOptions{}); err != nil {
		t.Fatal(err)
	}
	if b := bootOf(t, f); b["BootSourceOverrideTarget"] != "Pxe" || b["BootSourceOverrideMode"] != "UEFI" {
		t.Fatalf("boot = %v, want Pxe with UEFI kept", b)
	}
	// Asked for explicitly, the mode changes, and a later override without a mode keeps it.
	if err := c.SetBootDevice(ctxT(t), bmc.BootPXE, bmc.BootOptions{Mode: bmc.BootModeLegacy}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetBootDevice(ctxT(t), bmc.BootDisk, bmc.BootOptions{Persistent: true}); err != nil {
		t.Fatal(err)
	}
	if b := bootOf(t, f); b["BootSourceOverrideTarget"] != "Hdd" || b["BootSourceOverrideMode"] != "Legacy" {
		t.Fatalf("boot = %v, want Hdd with Legacy kept", b)
	}
	if err := c.SetBootDevice(ctxT(t), bmc.BootPXE, bmc.BootOptions{EFI: true}); err != nil {
		t.Fatal(err)
	}
	if b := bootOf(t, f); b["BootSourceOverrideMode"] != "UEFI" {
		t.Fatalf("boot = %v, want UEFI (EFI: true)", b)
	}
}

// A one-time override is used by the next boot and then reverts to Disabled, as on real BMCs.
func TestOneTimeOverrideIsConsumedByTheNextBoot(t *testing.T) {
	f := newFixture(t, "public-rackmount1", redfishsim.Config{})
	c := f.client(t)
	if err := c.SetBootDevice(ctxT(t), bmc.BootPXE, bmc.BootOptions{}); err != nil {
		t.Fatal(err)
	}
	cycle := func() {
		t.Helper()
		n := len(f.sim.Boots(rackSystem))
		if err := c.Power(ctxT(t), bmc.ActionCycle); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(f.sim.Boots(rackSystem)) == n {
			if time.Now().After(deadline) {
				t.Fatal("the system did not boot after a power cycle")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	cycle()
	if b := bootOf(t, f); b["BootSourceOverrideEnabled"] != "Disabled" {
		t.Fatalf("boot after the boot = %v, want the one-time override consumed", b)
	}
	cycle()
	boots := f.sim.Boots(rackSystem)
	if len(boots) != 2 || boots[0].Target != "Pxe" || boots[0].Enabled != "Once" || boots[1].Target != "None" {
		t.Fatalf("boots = %+v, want PXE once, then the default", boots)
	}
	// A continuous override stays.
	if err := c.SetBootDevice(ctxT(t), bmc.BootPXE, bmc.BootOptions{Persistent: true}); err != nil {
		t.Fatal(err)
	}
	cycle()
	if b := bootOf(t, f); b["BootSourceOverrideEnabled"] != "Continuous" {
		t.Fatalf("boot = %v, want Continuous kept", b)
	}
}
