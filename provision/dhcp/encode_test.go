package dhcp

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// encode must produce what the library's ToBytes does for every kind of reply the handler builds.
func TestEncodeMatchesToBytes(t *testing.T) {
	h := testHandler()
	var replies []*dhcpv4.DHCPv4
	add := func(r Result) {
		if r.Reply != nil {
			replies = append(replies, r.Reply)
		}
	}
	ipxe := []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)), dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")),
		dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{1, 2, 3})), dhcpv4.WithOption(dhcpv4.OptHostName("node-1")),
		dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(1), []byte(strings.Repeat("c", 200)))))}
	o := h.Handle(roundTrip(t, discover(t, knownMAC, ipxe...)), t0)
	add(o)
	add(h.Handle(roundTrip(t, request(t, roundTrip(t, o.Reply), knownMAC)), t0.Add(time.Second)))
	add(h.Handle(roundTrip(t, discover(t, "02:00:00:00:00:41")), t0))
	d := discover(t, "02:00:00:00:00:42")
	d.GatewayIPAddr = a("10.2.0.1").AsSlice()
	add(h.Handle(roundTrip(t, d), t0))
	bad, _ := dhcpv4.New(dhcpv4.WithHwAddr(d.ClientHWAddr), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(a("10.0.0.77").AsSlice())))
	add(h.Handle(roundTrip(t, bad), t0)) // NAK
	long := h.Handle(roundTrip(t, discover(t, "02:00:00:00:00:43")), t0).Reply
	long.UpdateOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(224), bytes.Repeat([]byte{7}, 600))) // split per RFC 3396
	long.UpdateOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(225), nil))
	long.BootFileName = strings.Repeat("f", 200)
	replies = append(replies, long)
	if len(replies) != 6 {
		t.Fatalf("%d replies, want 6", len(replies))
	}
	for i, r := range replies {
		if got, want := encode(r), r.ToBytes(); !bytes.Equal(got, want) {
			t.Errorf("reply %d (%s):\n got %x\nwant %x", i, r.MessageType(), got, want)
		}
	}
}

// A lease event's recorded changes are byte for byte what encoding/json writes for the map the
// server recorded before (and what readers of the feed decode).
func TestLeaseEventJSONMatchesEncodingJSON(t *testing.T) {
	exp := time.Date(2026, 12, 2, 11, 59, 30, 123, time.FixedZone("X", 3600))
	for _, e := range []Event{
		{Kind: "lease.bound", MAC: "52:54:00:12:34:56", Addr: netip.MustParseAddr("10.0.0.7"), Expires: exp, Trace: "00c0ffee00c0ffee"},
		{Kind: "lease.offered", MAC: "02:be:00:00:00:01", Addr: netip.MustParseAddr("10.88.1.0"), Expires: exp},
		{Kind: "lease.declined", MAC: `odd"<mac>&\`, Addr: netip.MustParseAddr("192.168.0.255"), Expires: exp, Trace: "\x01é"},
	} {
		m := map[string]any{"mac": e.MAC, "address": e.Addr.String(), "expires": e.Expires.UTC().Format(time.RFC3339)}
		if e.Trace != "" {
			m["trace"] = e.Trace
		}
		want, _ := json.Marshal(m)
		got, ok := e.leaseJSON([]byte("prefix"))
		if !ok || string(got) != "prefix"+string(want) {
			t.Errorf("%s:\n got %s (%v)\nwant prefix%s", e.Kind, got, ok, want)
		}
	}
	if _, ok := (&Event{Kind: "dhcp.rogue", Data: map[string]any{}}).leaseJSON(nil); ok {
		t.Error("a non-lease event encoded as a lease event")
	}
}
