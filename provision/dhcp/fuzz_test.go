package dhcp

import (
	"net"
	"reflect"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// addSeeds adds the seeds both fuzz targets start from beyond their corpus: a PXE DISCOVER, a
// relayed REQUEST (with sname and file set), and a truncated packet. It returns the REQUEST's
// bytes.
func addSeeds(f *testing.F) []byte {
	hw, _ := net.ParseMAC(knownMAC)
	d, _ := dhcpv4.NewDiscovery(hw, dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
		dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")), dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient")),
		dhcpv4.WithOption(dhcpv4.OptHostName("node-1")))
	f.Add(d.ToBytes())
	rq, _ := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.0.0.10"))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.0.0.1"))))
	rq.GatewayIPAddr = net.ParseIP("10.2.0.1").To4()
	rq.ServerHostName, rq.BootFileName = "boot", "undionly.kpxe"
	b := rq.ToBytes()
	f.Add(b)
	f.Add([]byte{1, 1, 6, 0})
	return b
}

// FuzzHandle feeds arbitrary bytes down the server's request path (parse, then Handle in every
// mode): nothing may panic, and any reply must serialise and parse back as a BOOTREPLY.
func FuzzHandle(f *testing.F) {
	addSeeds(f)
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

// FuzzParseMatchesFromBytes: parse refuses exactly what dhcpv4.FromBytes refuses and otherwise
// gives the same message, and the handler's option accessors agree with the library's.
func FuzzParseMatchesFromBytes(f *testing.F) {
	b := addSeeds(f)
	// A repeated option (RFC 3396), an empty option, an option cut short, no End, no cookie.
	body := append([]byte(nil), b[:240]...)
	f.Add(append(append([]byte(nil), body...), 12, 2, 'a', 'b', 0, 12, 1, 'c', 60, 0, 255))
	f.Add(append(append([]byte(nil), body...), 12, 9, 'a'))
	f.Add(append(append([]byte(nil), body...), 53, 1, 1))
	f.Add(append(append([]byte(nil), body...), 53))
	f.Add(b[:239])
	f.Fuzz(func(t *testing.T, data []byte) {
		want, werr := dhcpv4.FromBytes(data)
		got, gerr := parse(append([]byte(nil), data...))
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("FromBytes error %v, parse error %v", werr, gerr)
		}
		if werr != nil {
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("parse %+v\nFromBytes %+v", got, want)
		}
		if msgType(got) != want.MessageType() {
			t.Fatalf("message type %v, library %v", msgType(got), want.MessageType())
		}
		for _, o := range []dhcpv4.OptionCode{dhcpv4.OptionServerIdentifier, dhcpv4.OptionRequestedIPAddress} {
			if optAddr(got, o) != addrOf(dhcpv4.GetIP(o, want.Options)) {
				t.Fatalf("option %v: %v, library %v", o, optAddr(got, o), addrOf(dhcpv4.GetIP(o, want.Options)))
			}
		}
	})
}
