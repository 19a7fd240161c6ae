package ipmisim_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prybar/prybar/internal/testenv"
	"github.com/prybar/prybar/provision/bmc"
	"github.com/prybar/prybar/provision/ipmi"
	"github.com/prybar/prybar/provision/ipmi/ipmisim"
	"github.com/prybar/prybar/provision/ipmi/ipmisimtest"
)

func start(t *testing.T, cfg ipmisim.Config) *ipmisim.BMC {
	t.Helper()
	b := ipmisim.New(cfg)
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func client(t *testing.T, b *ipmisim.BMC, opts ...ipmi.Option) *ipmi.Client {
	t.Helper()
	c := ipmi.New(b.Endpoint(), append([]ipmi.Option{ipmi.WithCipherSuite(3), ipmi.WithTimeout(2 * time.Second)}, opts...)...)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func ipmitool(t *testing.T, b *ipmisim.BMC, args ...string) string {
	t.Helper()
	testenv.LookPath(t, "ipmitool", "ipmitool")
	ep := b.Endpoint()
	out, err := ipmisimtest.Ipmitool(context.Background(), ep.Address, ep.Port, ep.Username, ep.Password, args...)
	if err != nil {
		t.Fatalf("ipmitool %v: %v\n%s", args, err, out)
	}
	return out
}

func waitPower(t *testing.T, c *ipmi.Client, want bmc.PowerState) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := c.PowerState(context.Background())
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("power state: got %q, %v; want %q", got, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The client drives the simulated machine, the power change honours PowerDelay, and ipmitool
// (an independent implementation) reads the same state back.
func TestClientAndIpmitoolAgree(t *testing.T) {
	ctx := context.Background()
	b := start(t, ipmisim.Config{PowerDelay: 150 * time.Millisecond})
	c := client(t, b)

	if got, err := c.PowerState(ctx); err != nil || got != bmc.PowerOff {
		t.Fatalf("initial power: %q, %v", got, err)
	}
	if err := c.SetBootDevice(ctx, bmc.BootPXE, bmc.BootOptions{EFI: true, Persistent: true}); err != nil {
		t.Fatal(err)
	}
	if dev, opts := b.BootDevice(); dev != bmc.BootPXE || !opts.EFI || !opts.Persistent {
		t.Fatalf("sim boot device: %q %+v", dev, opts)
	}
	dev, opts, err := c.BootDevice(ctx)
	if err != nil || dev != bmc.BootPXE || !opts.EFI || !opts.Persistent {
		t.Fatalf("client boot read-back: %q %+v %v", dev, opts, err)
	}
	out := ipmitool(t, b, "chassis", "bootparam", "get", "5")
	for _, want := range []string{"Force PXE", "all future boots", "EFI"} {
		if !strings.Contains(out, want) {
			t.Errorf("ipmitool bootparam get 5: missing %q in:\n%s", want, out)
		}
	}

	if err := c.Power(ctx, bmc.ActionOn); err != nil {
		t.Fatal(err)
	}
	// The delay is real: right after the command the machine is still off.
	if got := b.Power(); got != bmc.PowerOff {
		t.Fatalf("power changed before PowerDelay: %q", got)
	}
	waitPower(t, c, bmc.PowerOn)
	if out := ipmitool(t, b, "chassis", "power", "status"); !strings.Contains(out, "Chassis Power is on") {
		t.Fatalf("ipmitool power status: %q", out)
	}
	if dev, boots := b.LastBoot(); dev != bmc.BootPXE || boots != 1 {
		t.Fatalf("last boot: %q #%d", dev, boots)
	}
	// Persistent override survives the boot.
	if dev, _ := b.BootDevice(); dev != bmc.BootPXE {
		t.Fatalf("persistent override consumed: %q", dev)
	}

	if err := c.Power(ctx, bmc.ActionOff); err != nil {
		t.Fatal(err)
	}
	waitPower(t, c, bmc.PowerOff)
	if out := ipmitool(t, b, "chassis", "power", "status"); !strings.Contains(out, "Chassis Power is off") {
		t.Fatalf("ipmitool power status: %q", out)
	}
	want := []string{"boot pxe persistent efi", "chassis power on", "power on (command)", "booted pxe", "chassis power off", "power off (command)"}
	if got := b.Log(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("log:\n got %q\nwant %q", got, want)
	}
	// Our session stays open across calls while each ipmitool run logs in beside it: two
	// sessions at most, and never two commands at once.
	if b.PeakInFlight() != 1 || b.PeakSessions() != 2 {
		t.Fatalf("peak in flight %d, peak sessions %d; want 1 and 2", b.PeakInFlight(), b.PeakSessions())
	}
}

// ipmitool can set the boot device itself (it brackets the write with set-in-progress, which
// the simulator rejects with 80h and ipmitool tolerates) and drive power, and our client sees it.
func TestIpmitoolDrivesSim(t *testing.T) {
	b := start(t, ipmisim.Config{})
	c := client(t, b)
	ipmitool(t, b, "chassis", "bootdev", "pxe")
	ipmitool(t, b, "chassis", "power", "on")
	if got := b.Power(); got != bmc.PowerOn {
		t.Fatalf("power %q", got)
	}
	if dev, _ := b.LastBoot(); dev != bmc.BootPXE {
		t.Fatalf("booted %q, want pxe", dev)
	}
	if dev, _ := b.BootDevice(); dev != "" {
		t.Fatalf("one-time override not consumed by the boot: %q", dev)
	}
	if got, err := c.PowerState(context.Background()); err != nil || got != bmc.PowerOn {
		t.Fatalf("client power state %q, %v", got, err)
	}
}

// A one-time override is used by exactly one boot; cycle, reset and soft-off behave like a
// machine, and BMC resets do not touch the machine.
func TestMachineSemantics(t *testing.T) {
	ctx := context.Background()
	b := start(t, ipmisim.Config{PoweredOn: true, PowerDelay: 30 * time.Millisecond})
	c := client(t, b)

	if err := c.SetBootDevice(ctx, bmc.BootPXE, bmc.BootOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Power(ctx, bmc.ActionCycle); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, n := b.LastBoot(); return n == 1 })
	if dev, _ := b.LastBoot(); dev != bmc.BootPXE {
		t.Fatalf("cycle booted %q", dev)
	}
	if dev, _ := b.BootDevice(); dev != "" {
		t.Fatalf("override left after boot: %q", dev)
	}
	if err := c.Power(ctx, bmc.ActionReset); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, n := b.LastBoot(); return n == 2 })
	if dev, _ := b.LastBoot(); dev != bmc.BootDisk || b.Power() != bmc.PowerOn {
		t.Fatalf("reset: booted %q, power %q", dev, b.Power())
	}
	if err := c.ResetBMC(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.ResetBMCCold(ctx); err != nil {
		t.Fatal(err)
	}
	if w, cold := b.BMCResets(); w != 1 || cold != 1 {
		t.Fatalf("bmc resets warm %d cold %d", w, cold)
	}
	if b.Power() != bmc.PowerOn {
		t.Fatal("BMC reset touched the machine")
	}
	if err := c.Power(ctx, bmc.ActionSoft); err != nil {
		t.Fatal(err)
	}
	waitPower(t, c, bmc.PowerOff)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Two consoles on one BMC at once show up in the concurrency counters: the property a fleet
// simulator checks to prove Prybar serialises operations per BMC.
func TestConcurrencyIsObservable(t *testing.T) {
	b := start(t, ipmisim.Config{OpLatency: 100 * time.Millisecond})
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		c := client(t, b)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 3; j++ {
				if _, err := c.PowerState(context.Background()); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if b.PeakInFlight() < 2 || b.PeakSessions() < 2 {
		t.Fatalf("peak in flight %d, peak sessions %d; want >= 2", b.PeakInFlight(), b.PeakSessions())
	}
	if b.Ops() != 6 {
		t.Fatalf("ops %d, want 6", b.Ops())
	}
}

// A fleet of BMCs in one process, each driven by its own client in parallel.
func TestFleet(t *testing.T) {
	const n = 300
	ctx := context.Background()
	t0 := time.Now()
	bmcs := make([]*ipmisim.BMC, n)
	for i := range bmcs {
		bmcs[i] = start(t, ipmisim.Config{PowerDelay: 20 * time.Millisecond})
	}
	started := time.Since(t0)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for _, b := range bmcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c := ipmi.New(b.Endpoint(), ipmi.WithCipherSuite(3), ipmi.WithTimeout(5*time.Second))
			defer c.Close(ctx)
			if err := c.SetBootDevice(ctx, bmc.BootPXE, bmc.BootOptions{}); err != nil {
				t.Error(err)
				return
			}
			if err := c.Power(ctx, bmc.ActionOn); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, b := range bmcs {
		waitFor(t, func() bool { dev, _ := b.LastBoot(); return dev == bmc.BootPXE })
		if b.PeakInFlight() != 1 || b.Sessions() != 0 {
			t.Errorf("%s: peak in flight %d, sessions left %d", b.Addr(), b.PeakInFlight(), b.Sessions())
		}
	}
	t.Logf("%d BMCs: started in %s, provisioned in %s", n, started, time.Since(t0)-started)
}

func TestStartClose(t *testing.T) {
	b := ipmisim.New(ipmisim.Config{})
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err == nil {
		t.Fatal("second Start succeeded")
	}
	other := ipmisim.New(ipmisim.Config{Addr: b.Addr()})
	if err := other.Start(); err == nil {
		t.Fatal("second BMC bound a taken port")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}
