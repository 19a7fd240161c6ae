package dhcp_test

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/iprange"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/dhcp"
)

// TestInventoryReloadedOnChangeEvent: a machine registered while the server runs gets its
// reservation at once, because the server follows the event feed (its periodic reload is set to
// an hour here, so only the feed can explain the answer).
func TestInventoryReloadedOnChangeEvent(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "reload.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var netID int
	err = st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		n, err := tx.Network.Create().SetName("boot").SetCidr("10.88.0.0/16").SetRouter("10.88.0.1").Save(ctx)
		if err != nil {
			return err
		}
		netID = n.ID
		return tx.IPRange.Create().SetNetworkID(n.ID).SetFirst("10.88.1.0").SetLast("10.88.1.250").SetPurpose(iprange.PurposeDHCP).Exec(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	conn := newMemConn()
	srv, err := dhcp.Config{Mode: dhcp.Authoritative, Interface: "test", ServerIP: netip.MustParseAddr("10.88.0.1"),
		Store: st, Conn: conn, Refresh: time.Hour, Debounce: 10 * time.Millisecond, Log: quiet}.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hw := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x42}
	offerFor := func() string {
		d, _ := dhcpv4.NewDiscovery(hw)
		d.GatewayIPAddr = relay.IP
		conn.in <- d.ToBytes()
		select {
		case b := <-conn.out:
			o, err := dhcpv4.FromBytes(b)
			if err != nil {
				t.Fatal(err)
			}
			return o.YourIPAddr.String()
		case <-time.After(5 * time.Second):
			t.Fatal("no offer")
		}
		return ""
	}
	if got := offerFor(); got == "10.88.0.77" {
		t.Fatal("reserved before the reservation exists")
	}
	err = st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		m, err := tx.Machine.Create().SetName("late.lab.test").Save(ctx)
		if err != nil {
			return err
		}
		if err := tx.NIC.Create().SetMachineID(m.ID).SetMAC(hw.String()).Exec(ctx); err != nil {
			return err
		}
		return tx.IPAllocation.Create().SetNetworkID(netID).SetMachineID(m.ID).SetAddress("10.88.0.77").Exec(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := offerFor()
		if got == "10.88.0.77" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still offered %s 5 s after the reservation was committed, want 10.88.0.77", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
