package redfish_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prybar/prybar/provision/bmc"
	"github.com/prybar/prybar/provision/redfish"
	"github.com/prybar/prybar/provision/redfish/redfishsim"
)

// Mock-up variants written for these tests (testdata/gen.py) with shapes the DMTF mock-ups lack.
const (
	oddMockup   = "testdata/mockups/smartnic-oddities"
	bladeMockup = "testdata/mockups/blade-chassis"
)

// Issue 7, point 5: drives without Id/Name, MACs only under NetworkDeviceFunctions, and absent
// link states.
func TestInventoryOfOddShapes(t *testing.T) {
	f := newFixtureDir(t, oddMockup, redfishsim.Config{})
	inv, err := f.client(t).Inventory(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if inv.SystemID != "1" {
		t.Errorf("SystemID = %q, want 1", inv.SystemID)
	}
	var disks []string
	for _, d := range inv.Disks {
		disks = append(disks, d.ID+"|"+d.SerialNumber+"|"+d.Kind)
	}
	slices.Sort(disks)
	if want := []string{"Chassis/1/Drives/0|NV-0000-1|nvme", "Disk.Bay.1|HD-0000-2|hdd"}; !slices.Equal(disks, want) {
		t.Errorf("disks = %v, want %v (a drive without Id or Name is named by its path)", disks, want)
	}
	type nic struct {
		mac, link string
		speed     int
	}
	var got []nic
	for _, n := range inv.NICs {
		got = append(got, nic{n.MACAddress, n.LinkStatus, n.SpeedMbps})
	}
	slices.SortFunc(got, func(a, b nic) int { return strings.Compare(a.mac, b.mac) })
	want := []nic{
		{"52:54:00:0d:d0:01", "", 25000},         // EthernetInterface without LinkStatus: unknown
		{"b8:ce:f6:00:00:10", "LinkUp", 100000},  // NetworkDeviceFunction via NetworkInterfaces, Port LinkUp
		{"b8:ce:f6:00:00:11", "", 100000},        // PermanentMACAddress only; Port without LinkStatus
		{"b8:ce:f6:00:00:20", "LinkDown", 10000}, // adapter reached from the chassis; NetworkPort "Down"
	}
	if !slices.Equal(got, want) {
		t.Errorf("NICs = %+v\nwant   %+v", got, want)
	}
	for _, n := range inv.NICs {
		up := n.LinkUp()
		switch n.LinkStatus {
		case "":
			if up != nil {
				t.Errorf("NIC %s: absent link status reads as %v, want unknown (nil)", n.MACAddress, *up)
			}
		case "LinkUp":
			if up == nil || !*up {
				t.Errorf("NIC %s: LinkUp = %v", n.MACAddress, up)
			}
		case "LinkDown":
			if up == nil || *up {
				t.Errorf("NIC %s: LinkUp = %v", n.MACAddress, up)
			}
		}
	}
}

// Issue 7, point 4: a BMC that manages several systems.
func TestBladeChassisNeedsASystemAndListsThem(t *testing.T) {
	f := newFixtureDir(t, bladeMockup, redfishsim.Config{})
	c := f.client(t)
	_, err := c.PowerState(ctxT(t))
	if err == nil {
		t.Fatal("PowerState on a 3-system BMC without a system id succeeded")
	}
	for _, want := range []string{"manages 3 systems", "Blade1 (Blade 1, serial SN-BLADE-0001)", "Blade2", "Blade3", "systemID"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	systems, err := c.Systems(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range systems {
		got = append(got, s.ID+"|"+s.Name+"|"+s.SerialNumber+"|"+string(s.PowerState)+"|"+s.Path)
	}
	want := []string{
		"Blade1|Blade 1|SN-BLADE-0001|on|/redfish/v1/Systems/Blade1",
		"Blade2|Blade 2|SN-BLADE-0002|off|/redfish/v1/Systems/Blade2",
		"Blade3|Blade 3|SN-BLADE-0003|on|/redfish/v1/Systems/Blade3",
	}
	if !slices.Equal(got, want) {
		t.Errorf("systems = %v\nwant %v", got, want)
	}

	// With the system id set, the client drives that blade and no other.
	ep := f.ep
	ep.SystemID = "Blade2"
	c2 := redfish.New(ep, fastOpts()...)
	t.Cleanup(func() { _ = c2.Close(t.Context()) })
	if id, err := c2.SystemID(ctxT(t)); err != nil || id != "Blade2" {
		t.Fatalf("SystemID = %q, %v", id, err)
	}
	if err := c2.Power(ctxT(t), bmc.ActionOn); err != nil {
		t.Fatal(err)
	}
	waitPower(t, c2, bmc.PowerOn)
	if err := c2.Power(ctxT(t), bmc.ActionCycle); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the cycle's phases (30 ms each) pass
	for blade, wantResets := range map[string][]string{"Blade1": nil, "Blade2": {"On", "PowerCycle"}, "Blade3": nil} {
		if got := f.sim.Resets("/redfish/v1/Systems/" + blade); !slices.Equal(got, wantResets) {
			t.Errorf("%s resets = %v, want %v", blade, got, wantResets)
		}
	}
	if inv, err := c2.Inventory(ctxT(t)); err != nil || inv.SerialNumber != "SN-BLADE-0002" || inv.SystemID != "Blade2" {
		t.Errorf("inventory of Blade2: %+v, %v", inv, err)
	}
	ep.SystemID = "/redfish/v1/Systems/Blade3" // the path works too
	c3 := redfish.New(ep, fastOpts()...)
	t.Cleanup(func() { _ = c3.Close(t.Context()) })
	if st, err := c3.PowerState(ctxT(t)); err != nil || st != bmc.PowerOn {
		t.Errorf("Blade3 by path: %q, %v", st, err)
	}
}
