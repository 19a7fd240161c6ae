package ipmi_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prybar/prybar/provision/bmc"
	"github.com/prybar/prybar/provision/ipmi"
	"github.com/prybar/prybar/provision/ipmi/ipmisimtest"
)

// fast pins cipher suite 3 (ipmi_sim has no 17) and a short timeout.
func fast(sim *ipmisimtest.Sim, opts ...ipmi.Option) *ipmi.Client {
	return ipmi.New(sim.Endpoint(), append([]ipmi.Option{ipmi.WithCipherSuite(3), ipmi.WithTimeout(2 * time.Second)}, opts...)...)
}

func pollPower(t *testing.T, c *ipmi.Client, want bmc.PowerState) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := c.PowerState(context.Background())
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("power: got %q, %v; want %q", got, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Power on/off/status and PXE boot through the client against the real ipmi_sim, confirmed
// by the chassis script's state and log and by ipmitool.
func TestRealSimPowerAndBoot(t *testing.T) {
	ctx := context.Background()
	sim := ipmisimtest.Start(t)
	c := fast(sim)
	defer c.Close(ctx)

	if got, err := c.PowerState(ctx); err != nil || got != bmc.PowerOff {
		t.Fatalf("initial power: %q, %v", got, err)
	}
	if err := c.Power(ctx, bmc.ActionOn); err != nil {
		t.Fatal(err)
	}
	pollPower(t, c, bmc.PowerOn)
	if sim.Power() != "on" {
		t.Fatalf("chassis script power %q", sim.Power())
	}
	if out := sim.Ipmitool(t, "chassis", "power", "status"); !strings.Contains(out, "Chassis Power is on") {
		t.Fatalf("ipmitool: %q", out)
	}

	if err := c.SetBootDevice(ctx, bmc.BootPXE, bmc.BootOptions{}); err != nil {
		t.Fatal(err)
	}
	if sim.BootDevice() != "pxe" {
		t.Fatalf("chassis script boot %q", sim.BootDevice())
	}
	if dev, _, err := c.BootDevice(ctx); err != nil || dev != bmc.BootPXE {
		t.Fatalf("client boot read-back %q, %v", dev, err)
	}
	if out := sim.Ipmitool(t, "chassis", "bootparam", "get", "5"); !strings.Contains(out, "Force PXE") {
		t.Fatalf("ipmitool bootparam get 5:\n%s", out)
	}

	if err := c.Power(ctx, bmc.ActionOff); err != nil {
		t.Fatal(err)
	}
	pollPower(t, c, bmc.PowerOff)
	if out := sim.Ipmitool(t, "chassis", "power", "status"); !strings.Contains(out, "Chassis Power is off") {
		t.Fatalf("ipmitool: %q", out)
	}
	want := []string{"set power 1", "set boot pxe", "set power 0"}
	if got := sim.Log(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("chassis log:\n got %q\nwant %q", got, want)
	}
	// Close is idempotent, and the client reconnects lazily afterwards.
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := c.PowerState(ctx); err != nil || got != bmc.PowerOff {
		t.Fatalf("after reconnect: %q, %v", got, err)
	}
}

// The other actions reach ipmi_sim as the expected chassis operations, in order; EFI and
// other devices are accepted (ipmi_sim keeps only the device, so only that is verified).
func TestRealSimActions(t *testing.T) {
	ctx := context.Background()
	sim := ipmisimtest.Start(t, ipmisimtest.Options{PowerOn: true})
	c := fast(sim)
	defer c.Close(ctx)

	if err := c.SetBootDevice(ctx, bmc.BootCDROM, bmc.BootOptions{EFI: true, Persistent: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetBootDevice(ctx, bmc.BootBIOS, bmc.BootOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Power(ctx, bmc.ActionReset); err != nil {
		t.Fatal(err)
	}
	if err := c.Power(ctx, bmc.ActionCycle); err != nil {
		t.Fatal(err)
	}
	// ipmi_sim powers off at once and back on about a second later.
	deadline := time.Now().Add(5 * time.Second)
	for len(sim.Log()) < 5 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	pollPower(t, c, bmc.PowerOn)
	if err := c.Power(ctx, bmc.ActionSoft); err != nil {
		t.Fatal(err)
	}
	pollPower(t, c, bmc.PowerOff)
	want := []string{"set boot cdrom", "set boot bios", "set reset 1", "set power 0", "set power 1", "set shutdown 1"}
	if got := sim.Log(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("chassis log:\n got %q\nwant %q", got, want)
	}
}

// ipmi_sim implements neither Warm nor Cold Reset: the error must carry the BMC address and
// the completion code, and must come back at once (a BMC that answers is not retried).
func TestRealSimBMCResetUnsupported(t *testing.T) {
	ctx := context.Background()
	sim := ipmisimtest.Start(t)
	c := fast(sim)
	defer c.Close(ctx)
	for name, reset := range map[string]func(context.Context) error{"warm": c.ResetBMC, "cold": c.ResetBMCCold} {
		err := reset(ctx)
		cc, ok := ipmi.CompletionCode(err)
		if err == nil || !ok || cc != 0xc1 {
			t.Fatalf("%s reset: %v (cc %#x %v), want cc 0xc1", name, err, cc, ok)
		}
		var e *ipmi.Error
		if !errors.As(err, &e) || e.Attempts != 1 || !strings.Contains(err.Error(), sim.Addr()) {
			t.Fatalf("%s reset error lacks address or was retried: %v", name, err)
		}
	}
	// The dropped session is rebuilt by the next call.
	if _, err := c.PowerState(ctx); err != nil {
		t.Fatal(err)
	}
}

// Default options (suites 3 then 17, 5 s timeout) work against ipmi_sim.
func TestRealSimDefaults(t *testing.T) {
	ctx := context.Background()
	sim := ipmisimtest.Start(t, ipmisimtest.Options{PowerOn: true})
	c := ipmi.New(sim.Endpoint())
	defer c.Close(ctx)
	if got, err := c.PowerState(ctx); err != nil || got != bmc.PowerOn {
		t.Fatalf("power %q, %v", got, err)
	}
}

// Pinning a suite ipmi_sim refuses (17) fails at once: the BMC answered, so no retry.
func TestRealSimUnansweredCipher(t *testing.T) {
	ctx := context.Background()
	sim := ipmisimtest.Start(t)
	c := ipmi.New(sim.Endpoint(), ipmi.WithCipherSuite(17), ipmi.WithTimeout(300*time.Millisecond), ipmi.WithRetries(1))
	defer c.Close(ctx)
	t0 := time.Now()
	_, err := c.PowerState(ctx)
	var e *ipmi.Error
	if err == nil || !errors.As(err, &e) || e.Attempts != 1 || time.Since(t0) > 3*time.Second {
		t.Fatalf("suite 17: %v after %s", err, time.Since(t0))
	}
	t.Logf("suite 17 against ipmi_sim: %v", err)
}

// A wrong password fails fast and is not retried (real BMCs lock accounts).
func TestRealSimWrongPassword(t *testing.T) {
	ctx := context.Background()
	sim := ipmisimtest.Start(t)
	ep := sim.Endpoint()
	ep.Password = "wrong"
	c := ipmi.New(ep, ipmi.WithCipherSuite(3), ipmi.WithTimeout(2*time.Second))
	defer c.Close(ctx)
	t0 := time.Now()
	_, err := c.PowerState(ctx)
	var e *ipmi.Error
	if err == nil || !errors.As(err, &e) || e.Attempts != 1 || !errors.Is(err, bmc.ErrUnknownPowerState) {
		t.Fatalf("wrong password: %v", err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Fatalf("wrong password took %s", d)
	}
	t.Logf("wrong password: %v", err)
}
