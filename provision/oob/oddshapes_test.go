package oob_test

import (
	"context"
	"slices"
	"testing"

	"github.com/prybar/prybar/ent"
	entbmc "github.com/prybar/prybar/ent/bmc"
	"github.com/prybar/prybar/ent/disk"
	"github.com/prybar/prybar/ent/nic"
	"github.com/prybar/prybar/provision/oob"
	"github.com/prybar/prybar/provision/redfish/redfishsim"
	"github.com/prybar/prybar/provision/redfish/redfishsim/redfishsimtest"
	"github.com/prybar/prybar/scheduler/executor"
)

// Issue 7, points 4 and 5, as recorded: discovery on a BMC with odd shapes (drives without
// Id/Name, MACs only under NetworkDeviceFunctions, absent link states) loses no drive or NIC,
// records an unknown link as unknown (keeping what another source found), and binds the BMC
// record to the one system it read.
func TestInventoryOfOddShapesIsRecorded(t *testing.T) {
	sim := redfishsimtest.StartDir(t, "../redfish/testdata/mockups/smartnic-oddities", redfishsim.Config{})
	st := openStore(t)
	id := newMachine(t, st, "odd.example.com")
	up := true
	err := st.Tx(context.Background(), func(ctx context.Context, tx *ent.Tx) error {
		if err := tx.BMC.Create().SetProtocol(entbmc.ProtocolREDFISH).SetAddress(sim.Host).SetPort(sim.Port).
			SetScheme("http").SetMachineID(id).Exec(ctx); err != nil {
			return err
		}
		// The in-band agent saw this NIC's link up; the BMC does not know.
		return tx.NIC.Create().SetMachineID(id).SetMAC("52:54:00:0d:d0:01").SetLink(up).Exec(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	b := &executor.BMC{Protocol: "REDFISH", Address: sim.Host, Port: sim.Port, Scheme: "http", Username: redfishsimtest.User, Password: redfishsimtest.Password}
	res, err := runCommit(ctxT(t), oob.New(fastConfig(st)), st, input(id, "odd.example.com", b, map[string]any{"action": "inventory"}))
	if err != nil {
		t.Fatalf("run: %v\n%s", err, res.Log)
	}
	ctx := ctxT(t)
	var disks []string
	for _, d := range st.Client.Disk.Query().Where(disk.MachineID(id)).AllX(ctx) {
		disks = append(disks, d.Name+"|"+d.Serial)
	}
	slices.Sort(disks)
	if want := []string{"Chassis/1/Drives/0|NV-0000-1", "Disk.Bay.1|HD-0000-2"}; !slices.Equal(disks, want) {
		t.Errorf("disks = %v, want %v", disks, want)
	}
	links := map[string]string{}
	for _, n := range st.Client.NIC.Query().Where(nic.MachineID(id)).AllX(ctx) {
		switch {
		case n.Link == nil:
			links[n.MAC] = "unknown"
		case *n.Link:
			links[n.MAC] = "up"
		default:
			links[n.MAC] = "down"
		}
	}
	want := map[string]string{
		"52:54:00:0d:d0:01": "up",      // unknown to the BMC: the agent's value stays
		"b8:ce:f6:00:00:10": "up",      // Port LinkUp
		"b8:ce:f6:00:00:11": "unknown", // no LinkStatus anywhere
		"b8:ce:f6:00:00:20": "down",    // NetworkPort "Down"
	}
	if len(links) != len(want) {
		t.Errorf("NICs = %v, want %v", links, want)
	}
	for mac, w := range want {
		if links[mac] != w {
			t.Errorf("NIC %s link = %q, want %q", mac, links[mac], w)
		}
	}
	if rec := st.Client.BMC.Query().Where(entbmc.MachineID(id)).OnlyX(ctx); rec.SystemID != "1" {
		t.Errorf("BMC system id = %q, want the discovered 1", rec.SystemID)
	}
}
