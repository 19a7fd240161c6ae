package dhcp

import (
	"net"
	"slices"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// encode is d.ToBytes(), byte for byte (BOOTP header, magic cookie, options in code order but
// option 82 last, long
// options split per RFC 3396, End, padding to 300 bytes), written into one buffer sized up front:
// the library's encoder grows its buffer several times and allocates to sort the option codes,
// once per reply the server sends.
func encode(d *dhcpv4.DHCPv4) []byte { return appendEncoded(nil, d) }

// appendEncoded appends encode(d) to b: a sender reuses one buffer for all its replies.
func appendEncoded(b []byte, d *dhcpv4.DHCPv4) []byte {
	var codeBuf [64]uint8
	codes := codeBuf[:0]
	size := 236 + 4 + 1
	agentInfo := false
	for c, v := range d.Options {
		size += 2 + len(v) + 2*(len(v)/255)
		switch c {
		case 0, 255: // Pad and End are never written from the map
		case 82:
			agentInfo = true // RFC 3046 2.1: the relay agent information comes last
		default:
			codes = append(codes, c)
		}
	}
	slices.Sort(codes)
	if agentInfo {
		codes = append(codes, 82)
	}
	b = slices.Grow(b, max(size, 300))
	start := len(b)
	b = append(b, byte(d.OpCode), byte(d.HWType), byte(len(d.ClientHWAddr)), d.HopCount)
	b = append(b, d.TransactionID[:]...)
	b = append(b, byte(d.NumSeconds>>8), byte(d.NumSeconds), byte(d.Flags>>8), byte(d.Flags))
	for _, ip := range []net.IP{d.ClientIPAddr, d.YourIPAddr, d.ServerIPAddr, d.GatewayIPAddr} {
		var a [4]byte
		if v4 := ip.To4(); v4 != nil {
			copy(a[:], v4)
		}
		b = append(b, a[:]...)
	}
	var chaddr [16]byte
	copy(chaddr[:], d.ClientHWAddr)
	b = append(b, chaddr[:]...)
	var sname [64]byte
	copy(sname[:63], d.ServerHostName)
	b = append(b, sname[:]...)
	var file [128]byte
	copy(file[:127], d.BootFileName)
	b = append(b, file[:]...)
	b = append(b, 99, 130, 83, 99) // magic cookie
	for _, c := range codes {
		data := d.Options[c]
		if len(data) == 0 {
			b = append(b, c, 0)
			continue
		}
		for len(data) > 0 {
			n := min(len(data), 255)
			b = append(b, c, byte(n))
			b = append(b, data[:n]...)
			data = data[n:]
		}
	}
	b = append(b, 255)
	for len(b)-start < 300 {
		b = append(b, 0)
	}
	return b
}
