package dhcp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/iprange"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/dhcp"
)

// memConn is a PacketConn without a network: ReadFrom returns what the benchmark queues, WriteTo
// hands the server's replies back to it.
type memConn struct {
	in     chan []byte
	out    chan []byte
	closed chan struct{}
	once   sync.Once
}

func newMemConn() *memConn {
	return &memConn{in: make(chan []byte, 8192), out: make(chan []byte, 8192), closed: make(chan struct{})}
}

var relay = &net.UDPAddr{IP: net.IPv4(10, 88, 0, 2), Port: 67}

func (c *memConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case p := <-c.in:
		return copy(b, p), relay, nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	}
}

func (c *memConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.out <- append([]byte(nil), b...)
	return len(b), nil
}

func (c *memConn) Close() error                     { c.once.Do(func() { close(c.closed) }); return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.UDPAddr{IP: net.IPv4(10, 88, 0, 1), Port: 67} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return errors.New("not supported") }

// BenchmarkDORA is the server's cost per full relayed DORA exchange (DISCOVER→OFFER,
// REQUEST→ACK) with leases and events persisted to SQLite. Clients arrive in waves: 1 is a quiet
// network (every packet its own transaction), 256 a loaded one (group commit has batches to
// build). With the journal, ACKs leave once journaled and transactions come every LazyFlush.
// ns/op and allocs/op are per exchange.
func BenchmarkDORA(b *testing.B) {
	for _, journal := range []bool{false, true} {
		for _, wave := range []int{1, 16, 256} {
			b.Run(fmt.Sprintf("journal=%v/wave=%d", journal, wave), func(b *testing.B) { benchDORA(b, wave, journal) })
		}
	}
}

// startMemServer starts an authoritative server on a memConn, with a SQLite store at path
// holding one relayed network (10.88.0.0/16) and its discovery pool.
func startMemServer(tb testing.TB, path string) (*dhcp.Server, *memConn, *store.Store) {
	tb.Helper()
	return startMemServerJournal(tb, path, "")
}

// startMemServerJournal is startMemServer with the lease journal in dir ("": none).
func startMemServerJournal(tb testing.TB, path, journal string) (*dhcp.Server, *memConn, *store.Store) {
	tb.Helper()
	return startMemServerWith(tb, path, func(c *dhcp.Config) { c.Journal = journal })
}

// startMemServerWith is startMemServer with edit applied to the server's configuration.
func startMemServerWith(tb testing.TB, path string, edit func(*dhcp.Config)) (*dhcp.Server, *memConn, *store.Store) {
	tb.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	err = st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		n, err := tx.Network.Create().SetName("bench").SetCidr("10.88.0.0/16").SetRouter("10.88.0.1").Save(ctx)
		if err != nil {
			return err
		}
		return tx.IPRange.Create().SetNetworkID(n.ID).SetFirst("10.88.1.0").SetLast("10.88.255.254").SetPurpose(iprange.PurposeDHCP).Exec(ctx)
	})
	if err != nil {
		tb.Fatal(err)
	}
	conn := newMemConn()
	cfg := dhcp.Config{Mode: dhcp.Authoritative, Interface: "bench", ServerIP: netip.MustParseAddr("10.88.0.1"),
		Store: st, Conn: conn, Log: quiet}
	edit(&cfg)
	srv, err := cfg.Start(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	return srv, conn, st
}

func benchDORA(b *testing.B, wave int, journal bool) {
	dir := b.TempDir()
	j := ""
	if journal {
		j = filepath.Join(dir, "journal")
	}
	_, conn, _ := startMemServerJournal(b, filepath.Join(dir, "bench.db"), j)
	mac := func(i int) net.HardwareAddr {
		return net.HardwareAddr{0x02, 0xbe, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	defer func() {
		// CPU time of the whole process (server and this client) per exchange: unlike ns/op it
		// hardly depends on the machine's load or on the linger.
		b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}()
	for done := 0; done < b.N; done += wave {
		n := min(wave, b.N-done)
		for i := 0; i < n; i++ {
			d, _ := dhcpv4.NewDiscovery(mac(done + i))
			d.GatewayIPAddr = relay.IP
			conn.in <- d.ToBytes()
		}
		offers := make([]*dhcpv4.DHCPv4, 0, n)
		for len(offers) < n {
			o, err := dhcpv4.FromBytes(<-conn.out)
			if err != nil || o.MessageType() != dhcpv4.MessageTypeOffer {
				b.Fatalf("want an OFFER, got %v (%v)", o, err)
			}
			offers = append(offers, o)
		}
		for _, o := range offers {
			r, _ := dhcpv4.NewRequestFromOffer(o)
			r.GatewayIPAddr = relay.IP
			conn.in <- r.ToBytes()
		}
		for i := 0; i < n; i++ {
			a, err := dhcpv4.FromBytes(<-conn.out)
			if err != nil || a.MessageType() != dhcpv4.MessageTypeAck {
				b.Fatalf("want an ACK, got %v (%v)", a, err)
			}
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
