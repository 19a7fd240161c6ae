package dhcp

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
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
