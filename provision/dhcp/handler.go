// Package dhcp is Prybar's DHCPv4 server. The Handler is pure: a request plus what the inventory
// knows (an Inventory snapshot and the in-memory lease table) gives a reply or nothing, the lease
// changes to persist and the events to record. It touches no socket and no database, so it is
// table-tested without a network (CoreDHCP's shape). The Server owns the socket, keeps the lease
// table in the database and writes it in group commits: an ACK leaves only after the batch that
// holds its lease has committed.
package dhcp

import (
	"bytes"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Mode is how the server answers.
type Mode string

// The modes of `serve --dhcp`.
const (
	// Off runs no DHCP server.
	Off Mode = "off"
	// Authoritative hands out addresses and boot information.
	Authoritative Mode = "authoritative"
	// Proxy answers only PXE clients, with boot information and no address (another server
	// addresses them).
	Proxy Mode = "proxy"
	// Shadow decides as Authoritative would but sends nothing: the decisions become events.
	Shadow Mode = "shadow"
)

// ParseMode reads a --dhcp value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(s)); m {
	case Off, Authoritative, Proxy, Shadow:
		return m, nil
	}
	return "", fmt.Errorf("dhcp mode %q: want off, authoritative, proxy or shadow", s)
}

// Network is what the handler needs of an inventory Network.
type Network struct {
	ID        int
	Name      string
	Prefix    netip.Prefix
	Router    netip.Addr
	DNS       []netip.Addr
	Domain    string
	LeaseTime time.Duration // 0: the handler's default
	// Pools are the ranges (first, last inclusive) marked for discovery (IPRange purpose DHCP).
	Pools [][2]netip.Addr
}

// Reservation is a known NIC's address (an IPAllocation of its machine on the network).
type Reservation struct {
	NetworkID int
	Addr      netip.Addr
	MachineID int
}

// Inventory is a snapshot of the inventory the handler decides from.
type Inventory struct {
	Networks []Network
	// Reservations by MAC (lower-case, colon separated), one per network the machine has an address on.
	Reservations map[string][]Reservation
	// Machines maps a known NIC's MAC to its machine, reservation or not.
	Machines map[string]int
	// Allocated holds every allocated address per network: the pool never hands them out.
	Allocated map[int]map[netip.Addr]bool
}

func (inv *Inventory) network(ip netip.Addr) *Network {
	for i := range inv.Networks {
		if inv.Networks[i].Prefix.Contains(ip) {
			return &inv.Networks[i]
		}
	}
	return nil
}

func (inv *Inventory) byID(id int) *Network {
	for i := range inv.Networks {
		if inv.Networks[i].ID == id {
			return &inv.Networks[i]
		}
	}
	return nil
}

// poolSize is the number of addresses in n's discovery pools, and fixed how many of them are never
// offered whatever the leases (the network and router addresses, the server's own, reservations).
func (inv *Inventory) poolSize(n *Network, server netip.Addr) (size, fixed int) {
	for _, p := range n.Pools {
		size += int(ipv4Int(p[1]) - ipv4Int(p[0]) + 1)
	}
	seen := map[netip.Addr]bool{}
	for _, a := range []netip.Addr{n.Prefix.Addr(), n.Router, server} {
		if a.IsValid() && !seen[a] && inPools(n, a) {
			seen[a] = true
			fixed++
		}
	}
	for a := range inv.Allocated[n.ID] {
		if !seen[a] && inPools(n, a) {
			seen[a] = true
			fixed++
		}
	}
	return size, fixed
}

func ipv4Int(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func (inv *Inventory) reservation(mac string, netID int) (Reservation, bool) {
	for _, r := range inv.Reservations[mac] {
		if r.NetworkID == netID {
			return r, true
		}
	}
	return Reservation{}, false
}

// State of a lease.
type State string

// Lease states, as stored (ent lease.State).
const (
	Offered  State = "OFFERED"
	Bound    State = "BOUND"
	Released State = "RELEASED"
	Expired  State = "EXPIRED"
	Declined State = "DECLINED"
)

// Lease is one address's DHCP state.
type Lease struct {
	NetworkID int
	Addr      netip.Addr
	MAC       string
	State     State
	Expires   time.Time
	ClientID  string
	Hostname  string
	MachineID int // 0: unknown machine
	// Trace is the boot trace id (see Handler.traceFor); TraceAt when a boot exchange last used
	// it (not stored: a loaded lease takes the row's last update).
	Trace   string
	TraceAt time.Time
}

// holds reports whether the lease keeps its address from other clients at now.
func (l *Lease) holds(now time.Time) bool {
	switch l.State {
	case Offered, Bound, Declined:
		return now.Before(l.Expires)
	}
	return false
}

type addrKey struct {
	net  int
	addr netip.Addr
}

type macKey struct {
	net int
	mac string
}

// Leases is the in-memory lease table. The Server loads it from the database at start and is its
// only writer; every change the handler makes is returned in Result.Changed to be persisted.
//
// It also counts, as leases change, the held leases (OFFERED, BOUND, DECLINED: the states that keep
// an address until the lease is marked EXPIRED, which Expire does within a second of its time) in
// total and per network inside the discovery pools, so pool use and pool exhaustion are known
// without walking the addresses. The per-pool counts are relative to an Inventory (pools and
// reservations); sync recounts when the handler's inventory changes.
type Leases struct {
	byAddr map[addrKey]*Lease
	byMAC  map[macKey]*Lease
	cursor map[addrKey]netip.Addr // per pool (keyed by its first address): where the last search stopped

	inv      *Inventory        // what inPool was counted against
	held     int               // leases in a holding state
	inPool   map[int]int       // per network: of those, the ones on a pool address that is not reserved
	fullScan map[int]time.Time // per network: when a pool search last found it full
	size     map[int][2]int    // per network: pool size and never-offered addresses in it (Inventory.poolSize)

	// due is no later than the earliest expiry of a lease in a holding state (zero: none known),
	// so Expire walks the table only when something may have run out, not every second.
	due time.Time
}

// NewLeases builds a table from stored leases.
func NewLeases(ls []Lease) *Leases {
	t := &Leases{byAddr: map[addrKey]*Lease{}, byMAC: map[macKey]*Lease{}, cursor: map[addrKey]netip.Addr{},
		inPool: map[int]int{}, fullScan: map[int]time.Time{}, size: map[int][2]int{}}
	for i := range ls {
		t.put(&ls[i])
	}
	return t
}

func holding(s State) bool { return s == Offered || s == Bound || s == Declined }

// pooled reports whether l counts against its network's discovery pools.
func (t *Leases) pooled(l *Lease) bool {
	if t.inv == nil || !holding(l.State) || t.inv.Allocated[l.NetworkID][l.Addr] {
		return false
	}
	n := t.inv.byID(l.NetworkID)
	return n != nil && inPools(n, l.Addr)
}

// sync recounts the per-pool use against inv when it is not the inventory counted against (once
// per inventory reload: it walks the leases, never the addresses).
func (t *Leases) sync(inv *Inventory, server netip.Addr) {
	if t.inv == inv {
		return
	}
	t.inv = inv
	clear(t.inPool)
	clear(t.fullScan)
	clear(t.size)
	if inv == nil {
		return
	}
	for i := range inv.Networks {
		size, fixed := inv.poolSize(&inv.Networks[i], server)
		t.size[inv.Networks[i].ID] = [2]int{size, fixed}
	}
	for _, l := range t.byAddr {
		if t.pooled(l) {
			t.inPool[l.NetworkID]++
		}
	}
}

func (t *Leases) put(l *Lease) {
	k := addrKey{l.NetworkID, l.Addr}
	if old := t.byAddr[k]; old != nil {
		if holding(old.State) {
			t.held--
		}
		if t.pooled(old) {
			t.inPool[old.NetworkID]--
		}
	}
	if holding(l.State) {
		t.held++
		if t.due.IsZero() || l.Expires.Before(t.due) {
			t.due = l.Expires
		}
	}
	if t.pooled(l) {
		t.inPool[l.NetworkID]++
	}
	if old := t.byAddr[k]; old != nil && old.MAC != l.MAC {
		if t.byMAC[macKey{old.NetworkID, old.MAC}] == old {
			delete(t.byMAC, macKey{old.NetworkID, old.MAC})
		}
	}
	t.byAddr[k] = l
	if l.State != Declined { // a declined address is no longer its client's
		t.byMAC[macKey{l.NetworkID, l.MAC}] = l
	} else if cur := t.byMAC[macKey{l.NetworkID, l.MAC}]; cur != nil && cur.Addr == l.Addr {
		delete(t.byMAC, macKey{l.NetworkID, l.MAC})
	}
}

// All returns a copy of every lease.
func (t *Leases) All() []Lease {
	out := make([]Lease, 0, len(t.byAddr))
	for _, l := range t.byAddr {
		out = append(out, *l)
	}
	return out
}

// Get returns the lease of an address.
func (t *Leases) Get(netID int, a netip.Addr) (Lease, bool) {
	l := t.byAddr[addrKey{netID, a}]
	if l == nil {
		return Lease{}, false
	}
	return *l, true
}

// Event is something to record in the event log.
type Event struct {
	Kind      string // lease.offered, lease.bound, lease.released, lease.expired, lease.declined, dhcp.pool_exhausted, dhcp.rogue, dhcp.shadow
	MAC       string
	Addr      netip.Addr
	NetworkID int
	MachineID int
	Data      map[string]any
	At        time.Time // when it happened; zero: when recorded
	// Lease events (lease.*) carry the lease's expiry and trace here, not in Data: their
	// recorded changes are {address, expires, mac, trace} encoded from these fields (leaseJSON)
	// without a map per event, two events per exchange.
	Expires time.Time
	Trace   string
}

// leaseJSON appends the recorded changes of a lease event: what encoding/json writes for the map
// {"address", "expires" (RFC 3339, UTC), "mac", "trace" (when set)}. ok is false for any other
// event (Data is recorded instead).
func (e *Event) leaseJSON(b []byte) (_ []byte, ok bool) {
	if e.Data != nil || !strings.HasPrefix(e.Kind, "lease.") {
		return b, false
	}
	b = append(b, `{"address":"`...)
	b = e.Addr.AppendTo(b)
	b = append(b, `","expires":"`...)
	b = e.Expires.UTC().AppendFormat(b, time.RFC3339)
	b = append(b, `","mac":`...)
	b = appendJSONString(b, e.MAC)
	if e.Trace != "" {
		b = append(b, `,"trace":`...)
		b = appendJSONString(b, e.Trace)
	}
	return append(b, '}'), true
}

// appendJSONString appends s as encoding/json quotes it (MACs and traces are plain hex: the
// escaping branch is for anything else).
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// Boot is where PXE clients find their boot files.
type Boot struct {
	// Server is the TFTP server (siaddr, option 66); zero: the DHCP server's own address.
	Server netip.Addr
	// ScriptURL is the base of the per-machine iPXE script (e.g. "http://10.0.0.1:8081/boot/ipxe"):
	// an iPXE client gets ScriptURL + "?mac=<mac>". Empty: iPXE clients get no boot file.
	ScriptURL string
	// Files overrides the boot file per client architecture (option 93).
	Files map[iana.Arch]string
}

// DefaultBootFiles are the iPXE builds per architecture, as Debian's ipxe package names them (the
// arm64 one is not in Debian's package: put an arm64 build of that name in the TFTP root).
var DefaultBootFiles = map[iana.Arch]string{
	iana.INTEL_X86PC:     "undionly.kpxe",
	iana.EFI_IA32:        "ipxe.efi",
	iana.EFI_BC:          "ipxe.efi",
	iana.EFI_X86_64:      "ipxe.efi",
	iana.EFI_ARM64:       "ipxe-arm64.efi",
	iana.EFI_X86_64_HTTP: "ipxe.efi",
	iana.EFI_ARM64_HTTP:  "ipxe-arm64.efi",
	iana.EFI_X86_HTTP:    "ipxe.efi",
}

// Handler decides replies. Fields are read-only while Handle runs; Handle itself is not safe for
// concurrent use (the Server calls it from one goroutine).
type Handler struct {
	Mode Mode
	// ServerID is the server's address on the interface: option 54, and the network served to
	// clients that are not relayed.
	ServerID netip.Addr
	Boot     Boot
	Inv      *Inventory
	Leases   *Leases
	// LeaseTime is the default lease time (networks may override); OfferHold how long an offer
	// keeps its address; Quarantine how long a declined address stays out of the pool.
	LeaseTime, OfferHold, Quarantine time.Duration
	// TraceHold is how long after a MAC's last boot exchange a new exchange still belongs to the
	// same boot and keeps its trace (zero: DefaultTraceHold). NewTrace makes a trace id (nil: 16
	// random hex digits, the form provision/ipxe.NewTrace makes).
	TraceHold time.Duration
	NewTrace  func() string

	rng *rand.ChaCha8
	// exhaustedAt is when each network's last dhcp.pool_exhausted event was recorded: one a
	// minute at most, however many clients a full pool turns away.
	exhaustedAt map[int]time.Time
	// netOpts are the encoded options each network's replies carry, for optsInv (the inventory
	// they were encoded from): every reply shares them instead of encoding them again.
	netOpts map[*Network]*networkOptions
	optsInv *Inventory
}

// networkOptions are a network's reply options, encoded (nil: not sent).
type networkOptions struct {
	mask, router, dns, domain, leaseTime []byte
}

func (h *Handler) options(n *Network) *networkOptions {
	if h.optsInv != h.Inv || h.netOpts == nil {
		h.netOpts, h.optsInv = map[*Network]*networkOptions{}, h.Inv
	}
	if o := h.netOpts[n]; o != nil {
		return o
	}
	o := &networkOptions{mask: dhcpv4.OptSubnetMask(net.CIDRMask(n.Prefix.Bits(), 32)).Value.ToBytes(),
		leaseTime: dhcpv4.OptIPAddressLeaseTime(h.leaseTime(n)).Value.ToBytes()}
	if n.Router.IsValid() {
		o.router = dhcpv4.OptRouter(ip4(n.Router)).Value.ToBytes()
	}
	if len(n.DNS) > 0 {
		ips := make([]net.IP, len(n.DNS))
		for i, d := range n.DNS {
			ips[i] = ip4(d)
		}
		o.dns = dhcpv4.OptDNS(ips...).Value.ToBytes()
	}
	if n.Domain != "" {
		o.domain = dhcpv4.OptDomainName(n.Domain).Value.ToBytes()
	}
	h.netOpts[n] = o
	return o
}

// ExhaustedEvery is the least time between two dhcp.pool_exhausted events of one network.
const ExhaustedEvery = time.Minute

// PoolUse is the use of one network's discovery pools: Used counts the addresses held by leases
// and the ones never offered (reservations, router, server, network address).
func (h *Handler) PoolUse(n *Network) (used, free int) {
	h.Leases.sync(h.Inv, h.ServerID)
	sz := h.Leases.size[n.ID]
	size := sz[0]
	used = min(size, sz[1]+h.Leases.inPool[n.ID])
	return used, size - used
}

// Result is the handler's decision for one request.
type Result struct {
	Reply *dhcpv4.DHCPv4 // nil: no answer
	// Dest is where Reply goes: the relay (port 67), the client's ciaddr (68) or broadcast (68).
	Dest *net.UDPAddr
	// Changed are leases to persist before Reply may be sent (Commit true) or lazily (offers).
	Changed []Lease
	Commit  bool
	Events  []Event
}

func (h *Handler) leaseTime(n *Network) time.Duration {
	if n.LeaseTime > 0 {
		return n.LeaseTime
	}
	if h.LeaseTime > 0 {
		return h.LeaseTime
	}
	return time.Hour
}

func ip4(a netip.Addr) net.IP { return net.IP(a.AsSlice()) }

func addrOf(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok || a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}

// Handle decides the answer to req at time now.
func (h *Handler) Handle(req *dhcpv4.DHCPv4, now time.Time) Result {
	var r Result
	if req.OpCode != dhcpv4.OpcodeBootRequest || req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return r
	}
	mac := req.ClientHWAddr.String()
	giaddr := addrOf(req.GatewayIPAddr)
	from := h.ServerID
	if giaddr.IsValid() {
		from = giaddr
	}
	var n *Network
	if h.Inv != nil {
		n = h.Inv.network(from)
	}
	mt := msgType(req)
	if h.Mode == Proxy {
		return h.proxy(req, mt, mac)
	}
	if n == nil {
		return r // not a network we serve
	}
	machine := 0
	if h.Inv != nil {
		machine = h.Inv.Machines[mac]
	}
	switch mt {
	case dhcpv4.MessageTypeDiscover:
		l, exhausted := h.pick(n, mac, now)
		if l == nil {
			if exhausted && now.Sub(h.exhaustedAt[n.ID]) >= ExhaustedEvery {
				if h.exhaustedAt == nil {
					h.exhaustedAt = map[int]time.Time{}
				}
				h.exhaustedAt[n.ID] = now
				r.Events = append(r.Events, Event{Kind: "dhcp.pool_exhausted", MAC: mac, NetworkID: n.ID, MachineID: machine,
					Data: map[string]any{"network": n.Name}})
			}
			return r
		}
		l.State, l.Expires, l.MachineID = Offered, now.Add(h.offerHold()), machine
		l.ClientID, l.Hostname = clientID(req), req.HostName()
		l.Trace, l.TraceAt = h.traceFor(n, mac, now), now
		if old, ok := h.Leases.byAddr[addrKey{n.ID, l.Addr}]; ok && old.State == Bound && old.MAC == mac && old.Expires.After(now) {
			// A bound client that rediscovers keeps its binding: the offer does not shorten it.
			l.State, l.Expires = Bound, old.Expires
		}
		h.Leases.put(l)
		r.Changed = append(r.Changed, *l)
		r.Events = append(r.Events, h.leaseEvent("lease.offered", l))
		r.Reply = h.reply(req, dhcpv4.MessageTypeOffer, n, l.Addr, mac, l.Trace)
	case dhcpv4.MessageTypeRequest:
		if sid := optAddr(req, dhcpv4.OptionServerIdentifier); sid.IsValid() && sid != h.ServerID {
			// The client chose another server: our offer is void.
			if l := h.Leases.byMAC[macKey{n.ID, mac}]; l != nil && l.State == Offered {
				// Through put, as every change: editing the lease in place left the held and
				// per-pool counts still counting it (pool use and exhaustion then saw an
				// address that was free as taken).
				c := *l
				c.State, c.Expires = Released, now
				h.Leases.put(&c)
				r.Changed = append(r.Changed, c)
			}
			return r
		}
		want := optAddr(req, dhcpv4.OptionRequestedIPAddress)
		if !want.IsValid() {
			want = addrOf(req.ClientIPAddr)
		}
		if !want.IsValid() || !n.Prefix.Contains(want) || !h.mayHave(n, mac, want, now) {
			if r.Reply = h.nak(req, mac); r.Reply != nil {
				r.Dest = dest(req, r.Reply)
			}
			return r
		}
		l := h.Leases.byAddr[addrKey{n.ID, want}]
		if l == nil || l.MAC != mac {
			l = &Lease{NetworkID: n.ID, Addr: want, MAC: mac}
		} else {
			c := *l
			l = &c
		}
		l.State, l.Expires, l.MachineID = Bound, now.Add(h.leaseTime(n)), machine
		l.ClientID, l.Hostname = clientID(req), req.HostName()
		if renewing := addrOf(req.ClientIPAddr).IsValid() && !optAddr(req, dhcpv4.OptionRequestedIPAddress).IsValid(); !renewing || l.Trace == "" {
			// A renewal (RENEWING/REBINDING: ciaddr, no option 50) is the running system's, not a
			// boot's: it keeps the lease's trace. Any other REQUEST continues or starts a boot.
			l.Trace, l.TraceAt = h.traceFor(n, mac, now), now
		}
		h.Leases.put(l)
		r.Changed, r.Commit = append(r.Changed, *l), true
		r.Events = append(r.Events, h.leaseEvent("lease.bound", l))
		r.Reply = h.reply(req, dhcpv4.MessageTypeAck, n, want, mac, l.Trace)
	case dhcpv4.MessageTypeDecline:
		a := optAddr(req, dhcpv4.OptionRequestedIPAddress)
		l := h.Leases.byAddr[addrKey{n.ID, a}]
		if l == nil || l.MAC != mac {
			return r
		}
		c := *l
		c.State, c.Expires = Declined, now.Add(h.quarantine())
		h.Leases.put(&c)
		r.Changed, r.Commit = append(r.Changed, c), true
		r.Events = append(r.Events, h.leaseEvent("lease.declined", &c))
	case dhcpv4.MessageTypeRelease:
		a := addrOf(req.ClientIPAddr)
		l := h.Leases.byAddr[addrKey{n.ID, a}]
		if l == nil || l.MAC != mac || l.State != Bound {
			return r
		}
		c := *l
		c.State, c.Expires = Released, now
		h.Leases.put(&c)
		r.Changed, r.Commit = append(r.Changed, c), true
		r.Events = append(r.Events, h.leaseEvent("lease.released", &c))
	case dhcpv4.MessageTypeInform:
		ci := addrOf(req.ClientIPAddr)
		if !ci.IsValid() {
			return r
		}
		r.Reply = h.reply(req, dhcpv4.MessageTypeAck, n, netip.Addr{}, mac, "")
		r.Reply.Options.Del(dhcpv4.OptionIPAddressLeaseTime) // RFC 2131: no lease time in an INFORM ACK
	default:
		return r
	}
	if r.Reply != nil {
		r.Dest = dest(req, r.Reply)
	}
	return r
}

func (h *Handler) offerHold() time.Duration {
	if h.OfferHold > 0 {
		return h.OfferHold
	}
	return 30 * time.Second
}

func (h *Handler) quarantine() time.Duration {
	if h.Quarantine > 0 {
		return h.Quarantine
	}
	return 10 * time.Minute
}

// DefaultTraceHold is Handler.TraceHold's default. A BIOS boot does DHCP twice within seconds (the
// PXE ROM, then iPXE) and the discovery agent a third time some seconds later: all of one boot.
const DefaultTraceHold = time.Minute

// traceFor is the trace of a boot exchange of mac starting at now: the one of the MAC's lease when
// a boot exchange used it less than TraceHold ago (the same boot), else a new one.
func (h *Handler) traceFor(n *Network, mac string, now time.Time) string {
	hold := h.TraceHold
	if hold <= 0 {
		hold = DefaultTraceHold
	}
	if cur := h.Leases.byMAC[macKey{n.ID, mac}]; cur != nil && cur.Trace != "" && !now.Before(cur.TraceAt) && now.Sub(cur.TraceAt) < hold {
		return cur.Trace
	}
	if h.NewTrace != nil {
		return h.NewTrace()
	}
	if h.rng == nil {
		var seed [32]byte
		_, _ = crand.Read(seed[:])
		h.rng = rand.NewChaCha8(seed)
	}
	// Not a secret (it travels in clear in DHCP and on kernel command lines): a seeded generator
	// spares a system call per boot.
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], h.rng.Uint64())
	return hex.EncodeToString(b[:])
}

func (h *Handler) leaseEvent(kind string, l *Lease) Event {
	return Event{Kind: kind, MAC: l.MAC, Addr: l.Addr, NetworkID: l.NetworkID, MachineID: l.MachineID,
		Expires: l.Expires, Trace: l.Trace}
}

// mayHave reports whether mac may be bound to a (REQUEST): its reservation, its own lease, or a
// free pool address (a client rebooting after the server lost an unsaved offer).
func (h *Handler) mayHave(n *Network, mac string, a netip.Addr, now time.Time) bool {
	if res, ok := h.Inv.reservation(mac, n.ID); ok {
		return res.Addr == a
	}
	if h.Inv.Allocated[n.ID][a] {
		return false
	}
	if l := h.Leases.byAddr[addrKey{n.ID, a}]; l != nil {
		if l.MAC == mac && l.State != Declined {
			return true
		}
		if l.holds(now) {
			return false
		}
	}
	return inPools(n, a)
}

func inPools(n *Network, a netip.Addr) bool {
	for _, p := range n.Pools {
		if p[0].Compare(a) <= 0 && a.Compare(p[1]) <= 0 {
			return true
		}
	}
	return false
}

// pick chooses the address to offer mac: its reservation, its current lease, or the next free pool
// address. exhausted is true when the pool has none left.
func (h *Handler) pick(n *Network, mac string, now time.Time) (l *Lease, exhausted bool) {
	if res, ok := h.Inv.reservation(mac, n.ID); ok {
		if cur := h.Leases.byAddr[addrKey{n.ID, res.Addr}]; cur != nil && cur.MAC != mac && cur.holds(now) {
			return nil, false // a stale dynamic lease or a quarantine still holds it
		}
		return &Lease{NetworkID: n.ID, Addr: res.Addr, MAC: mac}, false
	}
	if cur := h.Leases.byMAC[macKey{n.ID, mac}]; cur != nil && cur.State != Declined && inPools(n, cur.Addr) &&
		!h.Inv.Allocated[n.ID][cur.Addr] {
		c := *cur
		return &c, false
	}
	// A full pool (by the counts) is searched at most once a second: without this every DISCOVER
	// to a full pool would walk all its addresses. Leases whose time has passed but that Expire
	// has not yet marked are found by that once-a-second search.
	h.Leases.sync(h.Inv, h.ServerID)
	if sz := h.Leases.size[n.ID]; sz[1]+h.Leases.inPool[n.ID] >= sz[0] {
		if last, ok := h.Leases.fullScan[n.ID]; ok && now.Sub(last) < time.Second && !now.Before(last) {
			return nil, true
		}
		h.Leases.fullScan[n.ID] = now
	}
	for _, p := range n.Pools {
		k := addrKey{n.ID, p[0]}
		start := p[0]
		if c, ok := h.Leases.cursor[k]; ok && p[0].Compare(c) <= 0 && c.Compare(p[1]) <= 0 {
			start = c
		}
		a := start
		for {
			if h.free(n, a, now) {
				next := a.Next()
				if next.Compare(p[1]) > 0 {
					next = p[0]
				}
				h.Leases.cursor[k] = next
				return &Lease{NetworkID: n.ID, Addr: a, MAC: mac}, false
			}
			a = a.Next()
			if a.Compare(p[1]) > 0 || !a.IsValid() {
				a = p[0]
			}
			if a == start {
				break
			}
		}
	}
	return nil, true
}

func (h *Handler) free(n *Network, a netip.Addr, now time.Time) bool {
	if a == n.Router || a == h.ServerID || a == n.Prefix.Addr() || h.Inv.Allocated[n.ID][a] {
		return false
	}
	l := h.Leases.byAddr[addrKey{n.ID, a}]
	return l == nil || !l.holds(now)
}

// Expire marks the leases past their time EXPIRED and returns them with their events.
func (h *Handler) Expire(now time.Time) ([]Lease, []Event) {
	var ls []Lease
	var evs []Event
	t := h.Leases
	if t.due.IsZero() || now.Before(t.due) {
		return nil, nil
	}
	var next time.Time
	for _, l := range t.byAddr {
		if holding(l.State) && now.Before(l.Expires) && (next.IsZero() || l.Expires.Before(next)) {
			next = l.Expires
		}
		if (l.State == Bound || l.State == Offered || l.State == Declined) && !now.Before(l.Expires) {
			c := *l
			c.State = Expired
			h.Leases.put(&c)
			ls = append(ls, c)
			if l.State == Bound {
				evs = append(evs, h.leaseEvent("lease.expired", &c))
			}
		}
	}
	t.due = next
	return ls, evs
}

func clientID(req *dhcpv4.DHCPv4) string {
	if b := req.GetOneOption(dhcpv4.OptionClientIdentifier); len(b) > 0 {
		return hex.EncodeToString(b)
	}
	return ""
}

// isPXE reports whether the client asks for a boot file: a PXE ROM (vendor class PXEClient, or an
// architecture option) or iPXE.
func isPXE(req *dhcpv4.DHCPv4) bool {
	return strings.HasPrefix(req.ClassIdentifier(), "PXEClient") || len(req.ClientArch()) > 0 || isIPXE(req)
}

func isIPXE(req *dhcpv4.DHCPv4) bool {
	// iPXE sends option 77 as the plain string "iPXE" (not RFC 3004 length-prefixed).
	return bytes.Equal(req.GetOneOption(dhcpv4.OptionUserClassInformation), []byte("iPXE"))
}

// bootFile is the file (or URL) this client should load next. iPXE's script URL carries the
// boot's trace, so the script fetch and what follows it are tied to this DHCP exchange.
func (h *Handler) bootFile(req *dhcpv4.DHCPv4, mac, trace string) string {
	if isIPXE(req) {
		if h.Boot.ScriptURL == "" {
			return ""
		}
		if trace != "" {
			return h.Boot.ScriptURL + "?mac=" + mac + "&trace=" + trace
		}
		return h.Boot.ScriptURL + "?mac=" + mac
	}
	arch := iana.INTEL_X86PC
	if as := req.ClientArch(); len(as) > 0 {
		arch = as[0]
	}
	if f, ok := h.Boot.Files[arch]; ok {
		return f
	}
	return DefaultBootFiles[arch]
}

func (h *Handler) addBoot(resp, req *dhcpv4.DHCPv4, mac, trace string) {
	if !isPXE(req) {
		return
	}
	f := h.bootFile(req, mac, trace)
	if f == "" {
		return
	}
	srv := h.Boot.Server
	if !srv.IsValid() {
		srv = h.ServerID
	}
	resp.ServerIPAddr = ip4(srv)
	resp.BootFileName = f
	resp.UpdateOption(dhcpv4.OptTFTPServerName(srv.String()))
	resp.UpdateOption(dhcpv4.OptBootFileName(f))
	if strings.HasPrefix(req.ClassIdentifier(), "PXEClient") {
		resp.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
	}
	// iPXE's encapsulated options (175): 176 "no-pxedhcp" = 1 stops it waiting ~3 s for ProxyDHCP.
	resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(175), []byte{176, 1, 1}))
}

// newReply is dhcpv4.NewReplyFromRequest with the message type and server identifier: the same
// fields, without the random transaction id (a syscall and several allocations per reply) that
// the library draws only for it to be overwritten by the request's.
func newReply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, server netip.Addr) *dhcpv4.DHCPv4 {
	resp := &dhcpv4.DHCPv4{
		OpCode: dhcpv4.OpcodeBootReply, HWType: req.HWType, ClientHWAddr: req.ClientHWAddr,
		TransactionID: req.TransactionID, Flags: req.Flags,
		ClientIPAddr: net.IPv4zero, YourIPAddr: net.IPv4zero, ServerIPAddr: net.IPv4zero, GatewayIPAddr: req.GatewayIPAddr,
		Options: make(dhcpv4.Options, 8), // a typical reply's count: one small map, no growth
	}
	if resp.GatewayIPAddr == nil {
		resp.GatewayIPAddr = net.IPv4zero
	}
	// RFC 6842: the client identifier is echoed; so is the relay agent information (RFC 3046).
	for _, o := range []dhcpv4.OptionCode{dhcpv4.OptionRelayAgentInformation, dhcpv4.OptionClientIdentifier} {
		if v := req.GetOneOption(o); v != nil {
			resp.Options[o.Code()] = v
		}
	}
	resp.Options[dhcpv4.OptionDHCPMessageType.Code()] = []byte{byte(mt)}
	if server.Is4() {
		s := server.As4()
		resp.Options[dhcpv4.OptionServerIdentifier.Code()] = s[:]
	}
	return resp
}

func (h *Handler) reply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, n *Network, yiaddr netip.Addr, mac, trace string) *dhcpv4.DHCPv4 {
	resp := newReply(req, mt, h.ServerID)
	if yiaddr.IsValid() {
		resp.YourIPAddr = ip4(yiaddr)
	}
	if n != nil {
		// Shared, read-only encodings (see Handler.options): the same bytes UpdateOption stores.
		o := h.options(n)
		resp.Options[dhcpv4.OptionSubnetMask.Code()] = o.mask
		if o.router != nil {
			resp.Options[dhcpv4.OptionRouter.Code()] = o.router
		}
		if o.dns != nil {
			resp.Options[dhcpv4.OptionDomainNameServer.Code()] = o.dns
		}
		if o.domain != nil {
			resp.Options[dhcpv4.OptionDomainName.Code()] = o.domain
		}
		if yiaddr.IsValid() {
			resp.Options[dhcpv4.OptionIPAddressLeaseTime.Code()] = o.leaseTime
		}
	}
	if ri := req.GetOneOption(dhcpv4.OptionRelayAgentInformation); ri != nil {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionRelayAgentInformation, ri))
	}
	h.addBoot(resp, req, mac, trace)
	return resp
}

func (h *Handler) nak(req *dhcpv4.DHCPv4, _ string) *dhcpv4.DHCPv4 {
	resp := newReply(req, dhcpv4.MessageTypeNak, h.ServerID)
	resp.ClientIPAddr, resp.YourIPAddr = net.IPv4zero, net.IPv4zero
	if ri := req.GetOneOption(dhcpv4.OptionRelayAgentInformation); ri != nil {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionRelayAgentInformation, ri))
	}
	resp.SetBroadcast()
	return resp
}

// proxy answers PXE clients with boot information only (RFC 4578 proxyDHCP): no address.
func (h *Handler) proxy(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, mac string) Result {
	var r Result
	if !isPXE(req) {
		return r
	}
	switch mt {
	case dhcpv4.MessageTypeDiscover:
		r.Reply = h.reply(req, dhcpv4.MessageTypeOffer, nil, netip.Addr{}, mac, "")
	case dhcpv4.MessageTypeRequest:
		if sid := optAddr(req, dhcpv4.OptionServerIdentifier); sid.IsValid() && sid != h.ServerID {
			return r
		}
		r.Reply = h.reply(req, dhcpv4.MessageTypeAck, nil, netip.Addr{}, mac, "")
	default:
		return r
	}
	if r.Reply != nil {
		// A proxy offer must say PXEClient or PXE ROMs ignore it.
		r.Reply.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
		r.Dest = dest(req, r.Reply)
	}
	return r
}

// dest follows RFC 2131 4.1: the relay, else the client's address, else broadcast.
func dest(req, resp *dhcpv4.DHCPv4) *net.UDPAddr {
	if gi := addrOf(req.GatewayIPAddr); gi.IsValid() {
		return &net.UDPAddr{IP: req.GatewayIPAddr.To4(), Port: dhcpv4.ServerPort}
	}
	if ci := addrOf(req.ClientIPAddr); ci.IsValid() && resp.MessageType() != dhcpv4.MessageTypeNak {
		return &net.UDPAddr{IP: ip4(ci), Port: dhcpv4.ClientPort}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
}
