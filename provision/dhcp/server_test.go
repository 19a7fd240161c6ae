package dhcp

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/net/ipv4"
)

func TestRogueOncePerServerPerHour(t *testing.T) {
	s := &Server{rogueSeen: map[netip.Addr]time.Time{}, h: &Handler{ServerID: a("10.0.0.1")}}
	offer := func(server string) *dhcpv4.DHCPv4 {
		m, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer), dhcpv4.WithYourIP(net.ParseIP("10.0.0.150")),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP(server))))
		if err != nil {
			t.Fatal(err)
		}
		m.OpCode = dhcpv4.OpcodeBootReply
		return m
	}
	for _, c := range []struct {
		server string
		after  time.Duration
		want   bool
	}{
		{"10.0.0.9", 0, true},
		{"10.0.0.9", time.Minute, false},
		{"10.0.0.8", time.Minute, true},  // another server: its own window
		{"10.0.0.1", time.Minute, false}, // our own offer is no rogue
		{"10.0.0.9", 59 * time.Minute, false},
		{"10.0.0.9", time.Hour, true},
		{"10.0.0.8", time.Hour, false},
	} {
		ev, ok := s.rogue(offer(c.server), t0.Add(c.after))
		if ok != c.want {
			t.Errorf("offer from %s at +%s: event %v, want %v", c.server, c.after, ok, c.want)
		}
		if ok && (ev.Kind != "dhcp.rogue" || ev.Data["server"] != c.server || ev.Data["offered"] != "10.0.0.150") {
			t.Errorf("event %+v", ev)
		}
	}
}

// The kernel's count of packets dropped for want of buffer space reaches the reader: a burst
// sent to a socket with a small buffer that nobody reads meanwhile loses packets, and the first
// packet queued after the loss carries the count (each packet carries the count as it was when
// the packet was queued).
func TestOverflowCountFromKernel(t *testing.T) {
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if err := uc.SetReadBuffer(4096); err != nil { // the kernel rounds it up to its minimum
		t.Fatal(err)
	}
	if !watchOverflow(uc) {
		t.Fatal("SO_RXQ_OVFL not accepted")
	}
	tx, err := net.DialUDP("udp4", nil, uc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	const sent = 200
	for range sent {
		if _, err := tx.Write(make([]byte, 300)); err != nil {
			t.Fatal(err)
		}
	}
	pc := ipv4.NewPacketConn(uc)
	msgs := []ipv4.Message{{Buffers: [][]byte{make([]byte, 1500)}, OOB: make([]byte, 64)}}
	if err := uc.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	got, queued, total := uint32(0), 0, sent
	for {
		n, err := pc.ReadBatch(msgs, 0)
		if err != nil {
			break // the deadline: everything queued has been read
		}
		queued += n
		if d, ok := overflowCount(msgs[0].OOB[:msgs[0].NN]); ok {
			got = d
		}
		_ = uc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if queued < sent && got == 0 {
			if _, err := tx.Write(make([]byte, 300)); err != nil { // queued after the loss
				t.Fatal(err)
			}
			total++
		}
	}
	if queued == total || got == 0 {
		t.Fatalf("read %d of %d packets, drop count %d: want some dropped and counted", queued, total, got)
	}
	if int(got)+queued != total {
		t.Errorf("read %d + dropped %d != sent %d", queued, got, total)
	}
}
