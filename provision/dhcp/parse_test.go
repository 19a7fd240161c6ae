package dhcp

import (
	"net"
	"reflect"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// FuzzParseMatchesFromBytes: parse refuses exactly what dhcpv4.FromBytes refuses and otherwise
// gives the same message, and the handler's option accessors agree with the library's.
func FuzzParseMatchesFromBytes(f *testing.F) {
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
	// A repeated option (RFC 3396), an empty option, an option cut short, no End, no cookie.
	body := append([]byte(nil), b[:240]...)
	f.Add(append(append([]byte(nil), body...), 12, 2, 'a', 'b', 0, 12, 1, 'c', 60, 0, 255))
	f.Add(append(append([]byte(nil), body...), 12, 9, 'a'))
	f.Add(append(append([]byte(nil), body...), 53, 1, 1))
	f.Add(append(append([]byte(nil), body...), 53))
	f.Add(b[:239])
	f.Add([]byte{1, 1, 6, 0})
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
