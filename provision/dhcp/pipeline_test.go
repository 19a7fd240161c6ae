package dhcp_test

import (
	"context"
	"database/sql"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	_ "github.com/mattn/go-sqlite3"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/event"
	"github.com/prybar/prybar/ent/lease"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/dhcp"
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
	reply := func(within time.Duration) *dhcpv4.DHCPv4 { return nextReply(t, conn, within) }

	discover(1)
	offer := reply(5 * time.Second)
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("want an OFFER, got %v", offer)
	}

	// Another writer takes the database's write lock and keeps it.
	release := holdWriteLock(t, path)

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

	release()
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

// With a journal, an ACK does not wait for a transaction: while another writer holds the database,
// a client completes its exchange. A crash then (the database and the journal as the process left
// them, copied before anything is committed) loses nothing: the next start stores the binding
// from the journal.
func TestJournaledAckSurvivesACrashBeforeItsCommit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dhcp.db")
	journal := filepath.Join(dir, "journal")
	_, conn, _ := startMemServerJournal(t, path, journal)
	ctx := context.Background()

	holdWriteLock(t, path)

	ack := exchange(t, conn, net.HardwareAddr{0x02, 0xbe, 0, 0, 0, 7}, 5*time.Second)
	if ack == nil {
		t.Fatal("no ACK while the database was held: with a journal it must not wait for a commit")
	}

	// The crash image: what is on disk now, before any commit. The files are copied while the
	// lock is held, so the database copy is consistent and lacks the binding.
	crash := t.TempDir()
	for _, name := range []string{"dhcp.db", "dhcp.db-wal", "dhcp.db-shm"} {
		copyFile(t, filepath.Join(dir, name), filepath.Join(crash, name))
	}
	if err := os.CopyFS(filepath.Join(crash, "journal"), os.DirFS(journal)); err != nil {
		t.Fatal(err)
	}

	st, err := store.Open(ctx, filepath.Join(crash, "dhcp.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if n, err := st.Client.Lease.Query().Where(lease.StateEQ(lease.StateBOUND)).Count(ctx); err != nil || n != 0 {
		t.Fatalf("crash image already holds %d bound leases (%v): the test would prove nothing", n, err)
	}
	srv, err := dhcp.Config{Mode: dhcp.Authoritative, Interface: "crash", ServerIP: netip.MustParseAddr("10.88.0.1"),
		Store: st, Conn: newMemConn(), Log: quiet, Journal: filepath.Join(crash, "journal")}.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	l, err := st.Client.Lease.Query().Where(lease.StateEQ(lease.StateBOUND)).Only(ctx)
	if err != nil {
		t.Fatalf("the acknowledged lease after restart: %v", err)
	}
	if l.Address != ack.YourIPAddr.String() || l.MAC != ack.ClientHWAddr.String() {
		t.Fatalf("restored %s for %s, acknowledged %s for %s", l.Address, l.MAC, ack.YourIPAddr, ack.ClientHWAddr)
	}
	if n, err := st.Client.Event.Query().Where(event.Kind("lease.bound")).Count(ctx); err != nil || n != 1 {
		t.Fatalf("%d lease.bound events after replay (%v), want 1", n, err)
	}
}

// While the database cannot commit, journaled ACKs leave only up to the journal's backlog bound;
// past it an ACK waits for its transaction, and leaves once the database is free.
func TestJournalBacklogBoundsAcksWithoutCommit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dhcp.db")
	_, conn, _ := startMemServerWith(t, path, func(c *dhcp.Config) {
		c.Journal = filepath.Join(dir, "journal")
		c.JournalBacklog = 4 // one exchange: its offer's lease and event, its binding's lease and event
	})
	release := holdWriteLock(t, path)
	if exchange(t, conn, net.HardwareAddr{0x02, 0xbe, 0, 0, 0, 1}, 5*time.Second) == nil {
		t.Fatal("the first ACK, within the backlog, did not leave while the database was held")
	}
	request(t, conn, discover(t, conn, net.HardwareAddr{0x02, 0xbe, 0, 0, 0, 2}, 5*time.Second))
	if m := nextReply(t, conn, 500*time.Millisecond); m != nil {
		t.Fatalf("%s past the backlog left before its commit", m.MessageType())
	}
	release()
	if ack := nextReply(t, conn, 10*time.Second); ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("want the held ACK once the database is free, got %v", ack)
	}
}

// exchange runs one relayed DORA for mac through conn and returns the ACK (nil: none in time).
func exchange(t *testing.T, conn *memConn, mac net.HardwareAddr, within time.Duration) *dhcpv4.DHCPv4 {
	t.Helper()
	request(t, conn, discover(t, conn, mac, within))
	ack := nextReply(t, conn, within)
	if ack != nil && ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("want an ACK, got %v", ack)
	}
	return ack
}

// discover sends a relayed DISCOVER for mac and returns the OFFER (offers need no commit).
func discover(t *testing.T, conn *memConn, mac net.HardwareAddr, within time.Duration) *dhcpv4.DHCPv4 {
	t.Helper()
	d, err := dhcpv4.NewDiscovery(mac)
	if err != nil {
		t.Fatal(err)
	}
	d.GatewayIPAddr = relay.IP
	conn.in <- d.ToBytes()
	offer := nextReply(t, conn, within)
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("want an OFFER, got %v", offer)
	}
	return offer
}

// request sends the relayed REQUEST that takes offer.
func request(t *testing.T, conn *memConn, offer *dhcpv4.DHCPv4) {
	t.Helper()
	req, err := dhcpv4.NewRequestFromOffer(offer)
	if err != nil {
		t.Fatal(err)
	}
	req.GatewayIPAddr = relay.IP
	conn.in <- req.ToBytes()
}

// holdWriteLock takes the SQLite database's write lock at path from another connection, as
// another writer would, and keeps it until release (or the test's end).
func holdWriteLock(t *testing.T, path string) (release func()) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	lock, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if _, err := lock.ExecContext(ctx, "ROLLBACK"); err != nil {
				t.Error(err)
			}
			lock.Close()
			db.Close()
		})
	}
	t.Cleanup(release)
	return release
}

// nextReply is the next reply the server sent through conn (nil: none within the time).
func nextReply(t *testing.T, conn *memConn, within time.Duration) *dhcpv4.DHCPv4 {
	t.Helper()
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

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		if os.IsNotExist(err) {
			return
		}
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
