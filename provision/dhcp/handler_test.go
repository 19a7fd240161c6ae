package dhcp

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

var (
	t0       = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	knownMAC = "52:54:00:00:00:01"
)

func a(s string) netip.Addr { return netip.MustParseAddr(s) }

func testHandler() *Handler {
	inv := &Inventory{
		Networks: []Network{
			{ID: 1, Name: "admin", Prefix: netip.MustParsePrefix("10.0.0.0/24"), Router: a("10.0.0.254"),
				DNS: []netip.Addr{a("10.0.0.53")}, Domain: "lab.example", LeaseTime: 2 * time.Hour,
				Pools: [][2]netip.Addr{{a("10.0.0.100"), a("10.0.0.102")}}},
			{ID: 2, Name: "rack2", Prefix: netip.MustParsePrefix("10.2.0.0/24"), Router: a("10.2.0.1"),
				Pools: [][2]netip.Addr{{a("10.2.0.50"), a("10.2.0.59")}}},
		},
		Reservations: map[string][]Reservation{knownMAC: {{NetworkID: 1, Addr: a("10.0.0.10"), MachineID: 7}}},
		Machines:     map[string]int{knownMAC: 7},
		Allocated:    map[int]map[netip.Addr]bool{1: {a("10.0.0.10"): true, a("10.0.0.101"): true}},
	}
	traces := 0
	return &Handler{Mode: Authoritative, ServerID: a("10.0.0.1"), Inv: inv, Leases: NewLeases(nil),
		Boot:     Boot{ScriptURL: "http://10.0.0.1:8081/boot/ipxe"},
		NewTrace: func() string { traces++; return fmt.Sprintf("trace-%d", traces) }}
}

func discover(t *testing.T, mac string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	hw, _ := net.ParseMAC(mac)
	m, err := dhcpv4.NewDiscovery(hw, mods...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func request(t *testing.T, offer *dhcpv4.DHCPv4, mac string) *dhcpv4.DHCPv4 {
	t.Helper()
	hw, _ := net.ParseMAC(mac)
	m, err := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(offer.ServerIdentifier())))
	if err != nil {
		t.Fatal(err)
	}
	m.GatewayIPAddr = offer.GatewayIPAddr
	return m
}

func roundTrip(t *testing.T, m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	t.Helper()
	// Through the wire format, as the server sees it.
	out, err := dhcpv4.FromBytes(m.ToBytes())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestKnownMACGetsReservationWithNetworkOptions(t *testing.T) {
	h := testHandler()
	r := h.Handle(discover(t, knownMAC), t0)
	if r.Reply == nil {
		t.Fatal("no offer")
	}
	o := roundTrip(t, r.Reply)
	if o.MessageType() != dhcpv4.MessageTypeOffer || !o.YourIPAddr.Equal(net.ParseIP("10.0.0.10")) {
		t.Fatalf("got %s %s, want OFFER 10.0.0.10", o.MessageType(), o.YourIPAddr)
	}
	if got := net.IP(o.SubnetMask()).String(); got != "255.255.255.0" {
		t.Errorf("mask %s", got)
	}
	if rt := o.Router(); len(rt) != 1 || !rt[0].Equal(net.ParseIP("10.0.0.254")) {
		t.Errorf("router %v", rt)
	}
	if d := o.DNS(); len(d) != 1 || !d[0].Equal(net.ParseIP("10.0.0.53")) {
		t.Errorf("dns %v", d)
	}
	if o.DomainName() != "lab.example" || o.IPAddressLeaseTime(0) != 2*time.Hour {
		t.Errorf("domain %q lease %s", o.DomainName(), o.IPAddressLeaseTime(0))
	}
	if len(r.Events) != 1 || r.Events[0].Kind != "lease.offered" || r.Events[0].MachineID != 7 {
		t.Errorf("events %+v", r.Events)
	}
	// REQUEST → ACK, lease bound and to be committed before the ACK leaves.
	ack := h.Handle(roundTrip(t, request(t, o, knownMAC)), t0.Add(time.Second))
	if ack.Reply == nil || ack.Reply.MessageType() != dhcpv4.MessageTypeAck || !ack.Commit {
		t.Fatalf("ack %+v", ack)
	}
	l, ok := h.Leases.Get(1, a("10.0.0.10"))
	if !ok || l.State != Bound || l.MAC != knownMAC || l.MachineID != 7 || !l.Expires.Equal(t0.Add(time.Second+2*time.Hour)) {
		t.Errorf("lease %+v", l)
	}
	if ack.Events[0].Kind != "lease.bound" {
		t.Errorf("events %+v", ack.Events)
	}
}

func TestUnknownMACGetsPoolAddressSkippingAllocated(t *testing.T) {
	h := testHandler()
	var got []string
	for _, mac := range []string{"02:00:00:00:00:01", "02:00:00:00:00:02"} {
		r := h.Handle(discover(t, mac), t0)
		if r.Reply == nil {
			t.Fatalf("%s: no offer", mac)
		}
		got = append(got, r.Reply.YourIPAddr.String())
	}
	// .101 is allocated to a machine: the pool skips it.
	if got[0] != "10.0.0.100" || got[1] != "10.0.0.102" {
		t.Fatalf("offers %v, want [10.0.0.100 10.0.0.102]", got)
	}
	// The same client asking again keeps its address.
	if r := h.Handle(discover(t, "02:00:00:00:00:01"), t0); r.Reply.YourIPAddr.String() != "10.0.0.100" {
		t.Errorf("rediscover got %s", r.Reply.YourIPAddr)
	}
}

func TestArchitecturePicksBootFile(t *testing.T) {
	for _, tc := range []struct {
		arch iana.Arch
		want string
	}{
		{0, "undionly.kpxe"}, {7, "ipxe.efi"}, {9, "ipxe.efi"}, {11, "ipxe-arm64.efi"},
	} {
		h := testHandler()
		r := h.Handle(roundTrip(t, discover(t, "02:00:00:00:00:09",
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:0000")),
			dhcpv4.WithOption(dhcpv4.OptClientArch(tc.arch)))), t0)
		if r.Reply == nil {
			t.Fatalf("arch %d: no offer", tc.arch)
		}
		o := roundTrip(t, r.Reply)
		if o.BootFileName != tc.want || o.BootFileNameOption() != tc.want {
			t.Errorf("arch %d: file %q / option 67 %q, want %q", tc.arch, o.BootFileName, o.BootFileNameOption(), tc.want)
		}
		if !o.ServerIPAddr.Equal(net.ParseIP("10.0.0.1")) || o.TFTPServerName() != "10.0.0.1" {
			t.Errorf("arch %d: siaddr %s option 66 %q", tc.arch, o.ServerIPAddr, o.TFTPServerName())
		}
		if b := o.GetOneOption(dhcpv4.GenericOptionCode(175)); string(b) != "\xb0\x01\x01" {
			t.Errorf("arch %d: option 175 = %x, want b00101 (no-pxedhcp)", tc.arch, b)
		}
	}
}

func TestIPXEUserClassGetsScriptURL(t *testing.T) {
	h := testHandler()
	r := h.Handle(roundTrip(t, discover(t, knownMAC,
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
		dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")))), t0)
	want := "http://10.0.0.1:8081/boot/ipxe?mac=" + knownMAC + "&trace=trace-1"
	if r.Reply == nil || r.Reply.BootFileName != want {
		t.Fatalf("boot file %v, want %s", r.Reply, want)
	}
	// A client that is not PXE gets no boot file at all.
	r = h.Handle(discover(t, "02:00:00:00:00:05"), t0)
	if r.Reply.BootFileName != "" || r.Reply.GetOneOption(dhcpv4.GenericOptionCode(175)) != nil {
		t.Errorf("plain client got boot file %q", r.Reply.BootFileName)
	}
}

func TestRelayedRequestServedFromRelayNetworkToRelay(t *testing.T) {
	h := testHandler()
	d := discover(t, "02:00:00:00:00:21", dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(
		dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(1), []byte("port7")))))
	d.GatewayIPAddr = net.ParseIP("10.2.0.1").To4()
	d.HopCount = 1
	r := h.Handle(roundTrip(t, d), t0)
	if r.Reply == nil {
		t.Fatal("no offer")
	}
	o := roundTrip(t, r.Reply)
	if o.YourIPAddr.String() != "10.2.0.50" {
		t.Errorf("offered %s, want 10.2.0.50 from the relay's network", o.YourIPAddr)
	}
	if r.Dest.String() != "10.2.0.1:67" {
		t.Errorf("sent to %s, want the relay 10.2.0.1:67", r.Dest)
	}
	if !o.GatewayIPAddr.Equal(net.ParseIP("10.2.0.1")) {
		t.Errorf("giaddr %s", o.GatewayIPAddr)
	}
	ri := o.RelayAgentInfo()
	if ri == nil || string(ri.Get(dhcpv4.GenericOptionCode(1))) != "port7" {
		t.Errorf("option 82 not echoed: %v", ri)
	}
	if rt := o.Router(); len(rt) != 1 || rt[0].String() != "10.2.0.1" {
		t.Errorf("router %v", rt)
	}
	// A relay from a network we do not serve: nothing.
	d.GatewayIPAddr = net.ParseIP("192.168.9.1").To4()
	if r := h.Handle(roundTrip(t, d), t0); r.Reply != nil {
		t.Errorf("answered a relay from an unknown network")
	}
}

func TestDeclineQuarantinesAddress(t *testing.T) {
	h := testHandler()
	mac1, mac2 := "02:00:00:00:00:31", "02:00:00:00:00:32"
	o := h.Handle(discover(t, mac1), t0).Reply
	h.Handle(roundTrip(t, request(t, o, mac1)), t0)
	hw, _ := net.ParseMAC(mac1)
	dec, _ := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(o.YourIPAddr)))
	r := h.Handle(roundTrip(t, dec), t0.Add(time.Second))
	if r.Reply != nil || !r.Commit || len(r.Events) != 1 || r.Events[0].Kind != "lease.declined" {
		t.Fatalf("decline result %+v", r)
	}
	if l, _ := h.Leases.Get(1, addrOf(o.YourIPAddr)); l.State != Declined {
		t.Errorf("state %s", l.State)
	}
	o2 := h.Handle(discover(t, mac2), t0.Add(2*time.Second)).Reply
	if o2 == nil || o2.YourIPAddr.Equal(o.YourIPAddr) {
		t.Fatalf("next client offered the declined address %v", o2)
	}
	// The declining client itself does not get it back either.
	if o3 := h.Handle(discover(t, mac1), t0.Add(3*time.Second)).Reply; o3 != nil && o3.YourIPAddr.Equal(o.YourIPAddr) {
		t.Errorf("declining client re-offered %s", o3.YourIPAddr)
	}
}

func TestReleaseFreesAndExpiryFrees(t *testing.T) {
	h := testHandler()
	mac := "02:00:00:00:00:41"
	o := h.Handle(discover(t, mac), t0).Reply
	h.Handle(roundTrip(t, request(t, o, mac)), t0)
	hw, _ := net.ParseMAC(mac)
	rel, _ := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease),
		dhcpv4.WithClientIP(o.YourIPAddr))
	r := h.Handle(roundTrip(t, rel), t0.Add(time.Minute))
	if len(r.Events) != 1 || r.Events[0].Kind != "lease.released" {
		t.Fatalf("events %+v", r.Events)
	}
	if l, _ := h.Leases.Get(1, addrOf(o.YourIPAddr)); l.State != Released {
		t.Errorf("state %s", l.State)
	}
	// Bind another, let it run out.
	mac2 := "02:00:00:00:00:42"
	o2 := h.Handle(discover(t, mac2), t0).Reply
	h.Handle(roundTrip(t, request(t, o2, mac2)), t0)
	ls, evs := h.Expire(t0.Add(3 * time.Hour))
	if len(ls) != 1 || ls[0].State != Expired || len(evs) != 1 || evs[0].Kind != "lease.expired" {
		t.Errorf("expire: %+v %+v", ls, evs)
	}
}

func TestRenewalExtendsAndInformAnswered(t *testing.T) {
	h := testHandler()
	o := h.Handle(discover(t, knownMAC), t0).Reply
	h.Handle(roundTrip(t, request(t, o, knownMAC)), t0)
	hw, _ := net.ParseMAC(knownMAC)
	renew, _ := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(o.YourIPAddr))
	r := h.Handle(roundTrip(t, renew), t0.Add(time.Hour))
	if r.Reply == nil || r.Reply.MessageType() != dhcpv4.MessageTypeAck || r.Dest.String() != "10.0.0.10:68" {
		t.Fatalf("renewal %+v", r)
	}
	if l, _ := h.Leases.Get(1, a("10.0.0.10")); !l.Expires.Equal(t0.Add(3 * time.Hour)) {
		t.Errorf("renewal did not extend: expires %s", l.Expires)
	}
	inf, _ := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeInform),
		dhcpv4.WithClientIP(net.ParseIP("10.0.0.77")))
	r = h.Handle(roundTrip(t, inf), t0)
	if r.Reply == nil || r.Reply.MessageType() != dhcpv4.MessageTypeAck || !r.Reply.YourIPAddr.IsUnspecified() ||
		r.Reply.Options.Has(dhcpv4.OptionIPAddressLeaseTime) || r.Reply.DomainName() != "lab.example" {
		t.Errorf("inform reply %v", r.Reply)
	}
	// A request for someone else's address is refused.
	other, _ := net.ParseMAC("02:00:00:00:00:51")
	steal, _ := dhcpv4.New(dhcpv4.WithHwAddr(other), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.0.0.10"))))
	if r := h.Handle(roundTrip(t, steal), t0); r.Reply == nil || r.Reply.MessageType() != dhcpv4.MessageTypeNak ||
		r.Dest.String() != "255.255.255.255:68" {
		t.Errorf("stealing request got %v to %v, want a broadcast NAK", r.Reply, r.Dest)
	}
}

func TestExhaustedPoolNoOfferAndEvent(t *testing.T) {
	h := testHandler()
	for i, mac := range []string{"02:00:00:00:00:61", "02:00:00:00:00:62"} {
		if r := h.Handle(discover(t, mac), t0); r.Reply == nil {
			t.Fatalf("client %d: no offer", i)
		}
	}
	r := h.Handle(discover(t, "02:00:00:00:00:63"), t0)
	if r.Reply != nil {
		t.Fatalf("offered %s from an exhausted pool", r.Reply.YourIPAddr)
	}
	if len(r.Events) != 1 || r.Events[0].Kind != "dhcp.pool_exhausted" {
		t.Fatalf("events %+v", r.Events)
	}
	// Once the offers lapse the pool has room again.
	if r := h.Handle(discover(t, "02:00:00:00:00:63"), t0.Add(time.Minute)); r.Reply == nil {
		t.Errorf("no offer after the held offers expired")
	}
}

func TestProxyModeBootInfoOnly(t *testing.T) {
	h := testHandler()
	h.Mode = Proxy
	if r := h.Handle(discover(t, "02:00:00:00:00:71"), t0); r.Reply != nil {
		t.Fatal("proxy answered a non-PXE client")
	}
	r := h.Handle(roundTrip(t, discover(t, "02:00:00:00:00:71",
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)))), t0)
	if r.Reply == nil || !r.Reply.YourIPAddr.IsUnspecified() || r.Reply.BootFileName != "undionly.kpxe" ||
		r.Reply.ClassIdentifier() != "PXEClient" || len(r.Changed) != 0 {
		t.Fatalf("proxy offer %v", r.Reply)
	}
}

func TestExhaustedEventRateLimited(t *testing.T) {
	h := testHandler()
	h.OfferHold = time.Hour // the offers keep the pool full throughout
	for _, mac := range []string{"02:00:00:00:00:61", "02:00:00:00:00:62"} {
		if r := h.Handle(discover(t, mac), t0); r.Reply == nil {
			t.Fatalf("%s: no offer", mac)
		}
	}
	count := func(at time.Time) int {
		r := h.Handle(discover(t, "02:00:00:00:00:63"), at)
		if r.Reply != nil {
			t.Fatalf("offered %s from a full pool", r.Reply.YourIPAddr)
		}
		return len(r.Events)
	}
	if n := count(t0); n != 1 {
		t.Fatalf("first turned-away client: %d events, want 1 dhcp.pool_exhausted", n)
	}
	for _, d := range []time.Duration{time.Millisecond, 2 * time.Second, 59 * time.Second} {
		if n := count(t0.Add(d)); n != 0 {
			t.Errorf("after %s: %d events, want none (one a minute)", d, n)
		}
	}
	if n := count(t0.Add(ExhaustedEvery)); n != 1 {
		t.Errorf("a minute later: %d events, want 1", n)
	}
}

// bruteUse counts a network's pool the slow way, address by address.
func bruteUse(h *Handler, n *Network, now time.Time) (used, free int) {
	for _, p := range n.Pools {
		for x := p[0]; x.IsValid() && x.Compare(p[1]) <= 0; x = x.Next() {
			if h.free(n, x, now) {
				free++
			} else {
				used++
			}
		}
	}
	return used, free
}

// TestPoolUseCountsMatchAddressWalk drives offers, bindings, declines, releases, expiry and an
// inventory change, and after each step compares the counted pool use with a walk over every
// address.
func TestPoolUseCountsMatchAddressWalk(t *testing.T) {
	h := testHandler()
	h.Inv.Networks[1].Pools = [][2]netip.Addr{{a("10.2.0.10"), a("10.2.0.200")}}
	n := &h.Inv.Networks[1]
	check := func(step string, now time.Time) {
		t.Helper()
		gu, gf := h.PoolUse(n)
		wu, wf := bruteUse(h, n, now)
		if gu != wu || gf != wf {
			t.Fatalf("%s: counted used %d free %d, walked used %d free %d", step, gu, gf, wu, wf)
		}
	}
	check("empty", t0)
	relayed := func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		m.GatewayIPAddr = net.ParseIP("10.2.0.1")
		return m
	}
	now := t0
	var bound, offered []*dhcpv4.DHCPv4
	for i := 0; i < 60; i++ {
		mac := net.HardwareAddr{2, 0, 0, 0, 1, byte(i)}.String()
		r := h.Handle(relayed(discover(t, mac)), now)
		if r.Reply == nil {
			t.Fatalf("client %d: no offer", i)
		}
		if i%3 == 0 {
			offered = append(offered, r.Reply)
			continue // an offer left to lapse
		}
		ack := h.Handle(relayed(request(t, r.Reply, mac)), now)
		if ack.Reply == nil || ack.Reply.MessageType() != dhcpv4.MessageTypeAck {
			t.Fatalf("client %d: no ACK", i)
		}
		bound = append(bound, ack.Reply)
	}
	check("offers and bindings", now)
	for _, o := range offered[:5] {
		// The client took another server's offer: ours is given up (and its address freed).
		rq := request(t, o, o.ClientHWAddr.String())
		rq.UpdateOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.9.9.9")))
		if r := h.Handle(relayed(roundTrip(t, rq)), now); r.Reply != nil || len(r.Changed) != 1 || r.Changed[0].State != Released {
			t.Fatalf("REQUEST to another server: reply %v, changed %+v", r.Reply, r.Changed)
		}
	}
	check("offers given up for another server", now)
	for i, ack := range bound[:10] {
		m, _ := dhcpv4.New(dhcpv4.WithHwAddr(ack.ClientHWAddr), dhcpv4.WithGatewayIP(net.ParseIP("10.2.0.1")))
		if i%2 == 0 {
			m.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeRelease))
			m.ClientIPAddr = ack.YourIPAddr
		} else {
			m.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeDecline))
			m.UpdateOption(dhcpv4.OptRequestedIPAddress(ack.YourIPAddr))
		}
		h.Handle(roundTrip(t, m), now)
	}
	check("releases and declines", now)
	now = now.Add(time.Minute) // the offers lapse
	h.Expire(now)
	check("expiry", now)
	// A reservation inside the pool, on an address that is bound: the inventory changes.
	inv := *h.Inv
	inv.Allocated = map[int]map[netip.Addr]bool{2: {addrOf(bound[20].YourIPAddr): true, a("10.2.0.199"): true}}
	h.Inv = &inv
	check("inventory reload", now)
}

// One boot, one trace: a BIOS boot's two exchanges (PXE ROM, then iPXE seconds later) and the
// discovery agent's share the trace started by the first DISCOVER; the iPXE script URL and every
// lease event carry it. A renewal keeps it however late; a boot after TraceHold gets a new one, also
// when it starts with a REQUEST (INIT-REBOOT); another MAC has its own.
func TestTraceFollowsOneBoot(t *testing.T) {
	h := testHandler()
	const mac = "02:00:00:00:00:31"
	rom := []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC))}
	ipxe := append(rom, dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")))
	hw, _ := net.ParseMAC(mac)
	initReboot := func(addr string) *dhcpv4.DHCPv4 { // a rebooting client asks for its old address
		m, err := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(addr))), dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	renew := func(addr string) *dhcpv4.DHCPv4 { // RENEWING: ciaddr, no option 50, no server id
		m, err := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
			dhcpv4.WithClientIP(net.ParseIP(addr)))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	var last *dhcpv4.DHCPv4 // the last OFFER, for the REQUEST that follows it
	steps := []struct {
		name string
		at   time.Duration
		msg  func() *dhcpv4.DHCPv4
		// want: the trace of the lease event and the boot file (script URL for iPXE)
		event, trace, bootFile string
	}{
		{"PXE ROM discover", 0, func() *dhcpv4.DHCPv4 { return discover(t, mac, rom...) }, "lease.offered", "trace-1", "undionly.kpxe"},
		{"PXE ROM request", time.Second, func() *dhcpv4.DHCPv4 { return request(t, last, mac) }, "lease.bound", "trace-1", ""},
		{"iPXE discover", 5 * time.Second, func() *dhcpv4.DHCPv4 { return discover(t, mac, ipxe...) }, "lease.offered", "trace-1",
			"http://10.0.0.1:8081/boot/ipxe?mac=" + mac + "&trace=trace-1"},
		{"iPXE request", 6 * time.Second, func() *dhcpv4.DHCPv4 {
			r := request(t, last, mac)
			r.UpdateOption(dhcpv4.OptUserClass("iPXE"))
			return r
		}, "lease.bound", "trace-1", "http://10.0.0.1:8081/boot/ipxe?mac=" + mac + "&trace=trace-1"},
		{"agent discover, 50 s later", 56 * time.Second, func() *dhcpv4.DHCPv4 { return discover(t, mac) }, "lease.offered", "trace-1", ""},
		{"renewal half an hour later", 30 * time.Minute, func() *dhcpv4.DHCPv4 { return renew("10.0.0.100") }, "lease.bound", "trace-1", ""},
		{"next boot starts with INIT-REBOOT", 40 * time.Minute, func() *dhcpv4.DHCPv4 { return initReboot("10.0.0.100") }, "lease.bound", "trace-2",
			"http://10.0.0.1:8081/boot/ipxe?mac=" + mac + "&trace=trace-2"},
		{"other MAC", 40 * time.Minute, func() *dhcpv4.DHCPv4 { return discover(t, "02:00:00:00:00:32", ipxe...) }, "lease.offered", "trace-3",
			"http://10.0.0.1:8081/boot/ipxe?mac=02:00:00:00:00:32&trace=trace-3"},
		{"boot after the hold", 43 * time.Minute, func() *dhcpv4.DHCPv4 { return discover(t, mac, rom...) }, "lease.offered", "trace-4", "undionly.kpxe"},
	}
	for _, st := range steps {
		r := h.Handle(roundTrip(t, st.msg()), t0.Add(st.at))
		if r.Reply == nil || len(r.Events) != 1 {
			t.Fatalf("%s: reply %v, events %+v", st.name, r.Reply, r.Events)
		}
		ev := r.Events[0]
		if ev.Kind != st.event || ev.Trace != st.trace {
			t.Errorf("%s: event %s trace %v, want %s %s", st.name, ev.Kind, ev.Trace, st.event, st.trace)
		}
		if r.Reply.BootFileName != st.bootFile {
			t.Errorf("%s: boot file %q, want %q", st.name, r.Reply.BootFileName, st.bootFile)
		}
		if l, ok := h.Leases.Get(1, addrOf(r.Reply.YourIPAddr)); !ok || l.Trace != st.trace || len(r.Changed) != 1 || r.Changed[0].Trace != st.trace {
			t.Errorf("%s: lease %+v, changed %+v: want trace %s", st.name, l, r.Changed, st.trace)
		}
		if r.Reply.MessageType() == dhcpv4.MessageTypeOffer {
			last = roundTrip(t, r.Reply)
		}
	}
}

// Expire skips its walk until the earliest expiry, which every new holding lease can move
// earlier: an offer made after a long binding still expires on time, and so does the binding.
func TestExpireFollowsEarliestExpiry(t *testing.T) {
	h := testHandler()
	o := h.Handle(roundTrip(t, discover(t, "02:00:00:00:00:51")), t0)
	h.Handle(roundTrip(t, request(t, roundTrip(t, o.Reply), "02:00:00:00:00:51")), t0) // bound for 2 h
	expire := func(at time.Duration) []string {
		ls, evs := h.Expire(t0.Add(at))
		var got []string
		for _, l := range ls {
			got = append(got, l.MAC)
		}
		for _, e := range evs {
			got = append(got, e.Kind)
		}
		return got
	}
	if got := expire(time.Hour); len(got) != 0 {
		t.Fatalf("at 1 h: expired %v", got)
	}
	h.Handle(roundTrip(t, discover(t, "02:00:00:00:00:52")), t0.Add(time.Hour)) // offer held 30 s
	if got := expire(time.Hour + 29*time.Second); len(got) != 0 {
		t.Fatalf("at 1 h 29 s: expired %v", got)
	}
	if got := expire(time.Hour + 31*time.Second); len(got) != 1 || got[0] != "02:00:00:00:00:52" {
		t.Fatalf("at 1 h 31 s: expired %v, want the offer", got)
	}
	if got := expire(2*time.Hour - time.Second); len(got) != 0 {
		t.Fatalf("before 2 h: expired %v", got)
	}
	if got := expire(2 * time.Hour); len(got) != 2 || got[0] != "02:00:00:00:00:51" || got[1] != "lease.expired" {
		t.Fatalf("at 2 h: expired %v, want the binding and its event", got)
	}
	if got := expire(10 * time.Hour); len(got) != 0 {
		t.Fatalf("at 10 h: expired %v again", got)
	}
}
