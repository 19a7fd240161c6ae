package dhcp_test

import (
	"context"
	"database/sql"
	"net"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	_ "github.com/mattn/go-sqlite3"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/event"
)

// While a transaction cannot commit (another writer holds the database), clients are still
// answered what needs nothing durable: a new client gets its OFFER. The REQUEST's ACK waits for
// its commit and leaves once the database is free.
func TestOffersLeaveWhileACommitWaits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dhcp.db")
	_, conn, _ := startMemServer(t, path)
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

// An offer's lease row may wait for its binding's transaction (carryOffers), but every state is
// recorded: a lone offer is stored OFFERED within LazyFlush, a bound client BOUND, and each
// lease's events are in the order they happened.
func TestOfferRowsRecordedWithOrWithoutBinding(t *testing.T) {
	_, conn, st := startMemServer(t, filepath.Join(t.TempDir(), "dhcp.db"))
	ctx := context.Background()
	exchange := func(i byte, bind bool) *dhcpv4.DHCPv4 {
		d, _ := dhcpv4.NewDiscovery(net.HardwareAddr{0x02, 0xbe, 0, 0, 1, i})
		d.GatewayIPAddr = relay.IP
		conn.in <- d.ToBytes()
		o, err := dhcpv4.FromBytes(<-conn.out)
		if err != nil || o.MessageType() != dhcpv4.MessageTypeOffer {
			t.Fatalf("want an OFFER, got %v (%v)", o, err)
		}
		if !bind {
			return o
		}
		r, _ := dhcpv4.NewRequestFromOffer(o)
		r.GatewayIPAddr = relay.IP
		conn.in <- r.ToBytes()
		a, err := dhcpv4.FromBytes(<-conn.out)
		if err != nil || a.MessageType() != dhcpv4.MessageTypeAck {
			t.Fatalf("want an ACK, got %v (%v)", a, err)
		}
		return a
	}
	want := map[string]string{}
	for i := byte(0); i < 20; i++ {
		m := exchange(i, i%4 != 0)
		want[m.YourIPAddr.String()] = map[bool]string{true: "BOUND", false: "OFFERED"}[m.MessageType() == dhcpv4.MessageTypeAck]
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := map[string]string{}
		ls, err := st.Client.Lease.Query().All(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			got[l.Address] = string(l.State)
		}
		if reflect.DeepEqual(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stored leases %v, want %v", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	evs, err := st.Client.Event.Query().Where(event.KindHasPrefix("lease.")).Order(ent.Asc(event.FieldSeq)).All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string][]string{}
	for _, e := range evs {
		addr, _ := e.Changes["address"].(string)
		seen[addr] = append(seen[addr], e.Kind)
	}
	for addr, state := range want {
		wantKinds := []string{"lease.offered"}
		if state == "BOUND" {
			wantKinds = append(wantKinds, "lease.bound")
		}
		if !reflect.DeepEqual(seen[addr], wantKinds) {
			t.Errorf("%s: events %v, want %v", addr, seen[addr], wantKinds)
		}
	}
}
