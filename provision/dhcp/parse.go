package dhcp

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// parse is dhcpv4.FromBytes for the server's hot path: the same message from the same bytes, and
// an error for exactly the packets FromBytes refuses (FuzzParseMatchesFromBytes). It does not
// copy: addresses, the hardware address and option values point into q (capacity-limited, so
// an append copies), and the options map is allocated once at its final size. The library's
// parser allocates every field and option separately, some ten allocations a packet, and the
// garbage collector's share of the server's CPU followed from them. q must not change while
// the message is in use.
func parse(q []byte) (*dhcpv4.DHCPv4, error) {
	const header = 236 // BOOTP fixed fields; then the 4-byte magic cookie
	if len(q) < header+4 {
		return nil, errShort
	}
	if [4]byte(q[header:header+4]) != [4]byte{99, 130, 83, 99} {
		return nil, errCookie
	}
	opts := q[header+4:]
	n, err := countOptions(opts)
	if err != nil {
		return nil, err
	}
	p := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeType(q[0]),
		HWType:        iana.HWType(q[1]),
		HopCount:      q[3],
		TransactionID: dhcpv4.TransactionID(q[4:8]),
		NumSeconds:    uint16(q[8])<<8 | uint16(q[9]),
		Flags:         uint16(q[10])<<8 | uint16(q[11]),
		ClientIPAddr:  net.IP(q[12:16:16]),
		YourIPAddr:    net.IP(q[16:20:20]),
		ServerIPAddr:  net.IP(q[20:24:24]),
		GatewayIPAddr: net.IP(q[24:28:28]),
		Options:       make(dhcpv4.Options, n),
	}
	hl := min(int(q[2]), 16)
	p.ClientHWAddr = net.HardwareAddr(q[28 : 28+hl : 28+hl])
	p.ServerHostName = cString(q[44:108])
	p.BootFileName = cString(q[108:236])
	for len(opts) > 0 {
		code := opts[0]
		if code == 0 { // Pad
			opts = opts[1:]
			continue
		}
		if code == 255 { // End: what follows is ignored
			break
		}
		l := int(opts[1])
		v := opts[2 : 2+l : 2+l]
		opts = opts[2+l:]
		if cur, ok := p.Options[code]; ok || l == 0 {
			// RFC 3396: repeated options are concatenated (a fresh array: v stays untouched).
			p.Options[code] = append(cur, v...)
			continue
		}
		p.Options[code] = v
	}
	return p, nil
}

var (
	errShort  = errors.New("malformed DHCP packet: shorter than the BOOTP header")
	errCookie = errors.New("malformed DHCP packet: no DHCP magic cookie")
	errOption = errors.New("malformed DHCP packet: an option runs past the packet's end")
)

// countOptions checks the option area as FromBytes does (every option within the packet, an End
// before the packet ends, unless there are no options at all) and counts the options, for the
// map's size.
func countOptions(opts []byte) (int, error) {
	if len(opts) == 0 {
		return 0, nil
	}
	n := 0
	for len(opts) > 0 {
		switch opts[0] {
		case 0:
			opts = opts[1:]
			continue
		case 255:
			return n, nil
		}
		if len(opts) < 2 {
			return 0, io.ErrUnexpectedEOF
		}
		l := int(opts[1])
		if len(opts) < 2+l {
			return 0, errOption
		}
		opts = opts[2+l:]
		n++
	}
	return 0, io.ErrUnexpectedEOF
}

// cString is a NUL-terminated field's text (all of it without a NUL).
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	if len(b) == 0 {
		return ""
	}
	return string(b)
}

// msgType is req.MessageType() without the library's decoder (and its allocations).
func msgType(req *dhcpv4.DHCPv4) dhcpv4.MessageType {
	if v := req.Options[dhcpv4.OptionDHCPMessageType.Code()]; len(v) == 1 {
		return dhcpv4.MessageType(v[0])
	}
	return dhcpv4.MessageTypeNone
}

// optAddr is addrOf(req.GetIP-style accessor): an IPv4 address option (exactly 4 bytes, as the
// library requires), invalid when absent, malformed or 0.0.0.0.
func optAddr(req *dhcpv4.DHCPv4, o dhcpv4.OptionCode) netip.Addr {
	v := req.Options[o.Code()]
	if len(v) != 4 {
		return netip.Addr{}
	}
	a := netip.AddrFrom4([4]byte(v))
	if a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}
