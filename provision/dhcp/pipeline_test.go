package dhcp_test

import (
	"context"
	"database/sql"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	_ "github.com/mattn/go-sqlite3"
)

// While a transaction cannot commit (another writer holds the database), clients are still
// answered what needs nothing durable: a new client gets its OFFER. The REQUEST's ACK waits for
// its commit and leaves once the database is free.
func TestOffersLeaveWhileACommitWaits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dhcp.db")
	_, conn := startMemServer(t, path)
	hw := func(i byte) net.HardwareAddr { return net.HardwareAddr{0x02, 0xbe, 0, 0, 0, i} }
	discover := func(i byte) *dhcpv4.DHCPv4 {
		d, err := dhcpv4.NewDiscovery(hw(i))
		if err != nil {
			t.Fatal(err)
		}
		d.GatewayIPAddr = relay.IP
		conn.in <- d.ToBytes()
		return d
	}
	reply := func(within time.Duration) *dhcpv4.DHCPv4 {
		select {
		case b := <-conn.out:
			m, err := dhcpv4.FromBytes(b)
			if err != nil {
				t.Fatal(err)
			}
			return m
		case <-time.After(within):
			return nil
		}
	}

	discover(1)
	offer := reply(5 * time.Second)
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("want an OFFER, got %v", offer)
	}

	// Another writer takes the database's write lock and keeps it.
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	lock, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if _, err := lock.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	locked := true
	defer func() {
		if locked {
			_, _ = lock.ExecContext(ctx, "ROLLBACK")
		}
	}()

	req, err := dhcpv4.NewRequestFromOffer(offer)
	if err != nil {
		t.Fatal(err)
	}
	req.GatewayIPAddr = relay.IP
	conn.in <- req.ToBytes()
	time.Sleep(100 * time.Millisecond) // its transaction is now waiting for the lock

	discover(2)
	o2 := reply(2 * time.Second)
	if o2 == nil || o2.MessageType() != dhcpv4.MessageTypeOffer || o2.ClientHWAddr.String() != hw(2).String() {
		t.Fatalf("a new client got %v while a commit waited: want its OFFER at once", o2)
	}
	if m := reply(300 * time.Millisecond); m != nil {
		t.Fatalf("%s sent before its lease was committed", m.MessageType())
	}

	if _, err := lock.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	locked = false
	ack := reply(5 * time.Second)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(offer.YourIPAddr) {
		t.Fatalf("want the ACK of %s once the database is free, got %v", offer.YourIPAddr, ack)
	}
}
