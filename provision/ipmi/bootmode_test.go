package ipmi_test

import (
	"context"
	"testing"

	"github.com/prybar/prybar/provision/bmc"
	"github.com/prybar/prybar/provision/ipmi"
	"github.com/prybar/prybar/provision/ipmi/ipmisim"
)

// Issue 7, point 6: a boot override that does not ask for a mode keeps the EFI bit of the
// override in force instead of writing legacy.
func TestBootOverrideKeepsTheEFIBit(t *testing.T) {
	sim := ipmisim.New(ipmisim.Config{PoweredOn: true})
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	c := ipmi.New(sim.Endpoint(), ipmi.WithCipherSuite(3))
	defer c.Close(context.Background())
	ctx := context.Background()
	if err := c.SetBootDevice(ctx, bmc.BootPXE, bmc.BootOptions{Persistent: true, EFI: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetBootDevice(ctx, bmc.BootDisk, bmc.BootOptions{Persistent: true}); err != nil {
		t.Fatal(err)
	}
	if dev, opts := sim.BootDevice(); dev != bmc.BootDisk || !opts.EFI {
		t.Fatalf("boot = %s %+v, want disk with the EFI bit kept", dev, opts)
	}
	if err := c.SetBootDevice(ctx, bmc.BootPXE, bmc.BootOptions{Mode: bmc.BootModeLegacy}); err != nil {
		t.Fatal(err)
	}
	if dev, opts := sim.BootDevice(); dev != bmc.BootPXE || opts.EFI {
		t.Fatalf("boot = %s %+v, want pxe legacy when asked", dev, opts)
	}
}
