package dhcp

import (
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// FuzzHandle feeds arbitrary bytes down the server's request path (parse, then Handle in every
// mode): nothing may panic, and any reply must serialise and parse back as a BOOTREPLY.
func FuzzHandle(f *testing.F) {
	hw, _ := net.ParseMAC(knownMAC)
	d, _ := dhcpv4.NewDiscovery(hw, dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
		dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")), dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient")))
	f.Add(d.ToBytes())
	rq, _ := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.0.0.10"))))
	rq.GatewayIPAddr = net.ParseIP("10.2.0.1").To4()
	f.Add(rq.ToBytes())
	f.Add([]byte{1, 1, 6, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := parse(data)
		if err != nil {
			return // the server counts it as malformed and drops it
		}
		for _, m := range []Mode{Authoritative, Proxy, Shadow} {
			h := testHandler()
			h.Mode = m
			r := h.Handle(req, t0)
			if r.Reply == nil {
				continue
			}
			back, err := dhcpv4.FromBytes(r.Reply.ToBytes())
			if err != nil || back.OpCode != dhcpv4.OpcodeBootReply {
				t.Fatalf("mode %s: reply does not parse back: %v", m, err)
			}
			if r.Dest == nil {
				t.Fatalf("mode %s: reply without destination", m)
			}
		}
		_, _ = testHandler().Expire(t0.Add(time.Hour))
	})
}
