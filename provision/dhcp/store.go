package dhcp

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"entgo.io/ent/dialect"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/iprange"
	"github.com/prybar/prybar/internal/multirow"
	"github.com/prybar/prybar/internal/store"
)

type entTx = ent.Tx

// LoadInventory reads the networks, their discovery pools (IPRange purpose DHCP), the allocations
// (reservations) and the NICs into a snapshot for the handler.
func LoadInventory(ctx context.Context, st *store.Store) (*Inventory, error) {
	c := st.Client
	nets, err := c.Network.Query().WithRanges(func(q *ent.IPRangeQuery) { q.Where(iprange.PurposeEQ(iprange.PurposeDHCP)) }).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("dhcp: load networks: %w", err)
	}
	inv := &Inventory{Reservations: map[string][]Reservation{}, Machines: map[string]int{}, Allocated: map[int]map[netip.Addr]bool{}}
	for _, n := range nets {
		p, err := netip.ParsePrefix(n.Cidr)
		if err != nil || !p.Addr().Is4() {
			continue // validated on write; an IPv6 network is not DHCPv4's
		}
		nw := Network{ID: n.ID, Name: n.Name, Prefix: p, Domain: n.Domain, LeaseTime: time.Duration(n.LeaseSeconds) * time.Second}
		nw.Router, _ = netip.ParseAddr(n.Router)
		for _, d := range n.DNSServers {
			if a, err := netip.ParseAddr(d); err == nil && a.Is4() {
				nw.DNS = append(nw.DNS, a)
			}
		}
		for _, r := range n.Edges.Ranges {
			f, err1 := netip.ParseAddr(r.First)
			l, err2 := netip.ParseAddr(r.Last)
			if err1 == nil && err2 == nil && f.Is4() && l.Is4() && f.Compare(l) <= 0 {
				nw.Pools = append(nw.Pools, [2]netip.Addr{f, l})
			}
		}
		inv.Networks = append(inv.Networks, nw)
	}
	nics, err := c.NIC.Query().All(ctx)
	if err != nil {
		return nil, fmt.Errorf("dhcp: load NICs: %w", err)
	}
	macs := map[int][]string{}
	for _, n := range nics {
		inv.Machines[n.MAC] = n.MachineID
		macs[n.MachineID] = append(macs[n.MachineID], n.MAC)
	}
	allocs, err := c.IPAllocation.Query().All(ctx)
	if err != nil {
		return nil, fmt.Errorf("dhcp: load allocations: %w", err)
	}
	for _, a := range allocs {
		addr, err := netip.ParseAddr(a.Address)
		if err != nil {
			continue
		}
		if inv.Allocated[a.NetworkID] == nil {
			inv.Allocated[a.NetworkID] = map[netip.Addr]bool{}
		}
		inv.Allocated[a.NetworkID][addr] = true
		if a.MachineID == nil {
			continue
		}
		for _, mac := range macs[*a.MachineID] {
			inv.Reservations[mac] = append(inv.Reservations[mac], Reservation{NetworkID: a.NetworkID, Addr: addr, MachineID: *a.MachineID})
		}
	}
	return inv, nil
}

// LoadLeases reads the stored lease table.
func LoadLeases(ctx context.Context, st *store.Store) ([]Lease, error) {
	rows, err := st.Client.Lease.Query().All(ctx)
	if err != nil {
		return nil, fmt.Errorf("dhcp: load leases: %w", err)
	}
	out := make([]Lease, 0, len(rows))
	for _, r := range rows {
		a, err := netip.ParseAddr(r.Address)
		if err != nil {
			continue
		}
		l := Lease{NetworkID: r.NetworkID, Addr: a, MAC: r.MAC, State: State(r.State), Expires: r.ExpiresAt,
			ClientID: r.ClientID, Hostname: r.Hostname, Trace: r.Trace, TraceAt: r.UpdatedAt}
		if r.MachineID != nil {
			l.MachineID = *r.MachineID
		}
		out = append(out, l)
	}
	return out, nil
}

// saveLeases upserts leases in multi-row statements keyed on (network_id, address): the unique
// index is what guarantees one client per address. Raw SQL because ent (without its upsert
// feature) cannot express ON CONFLICT, and a few statements per batch (of the sizes multirow.Chunks
// gives, which the driver's statement cache keeps) is what makes group commit pay. Lease changes
// carry their own lease.* events, so the generic row hook is not wanted.
func saveLeases(ctx context.Context, tx *ent.Tx, dialectName string, ls []Lease) error {
	// The last change of an address in a batch wins (a batch may offer then bind it).
	last := map[addrKey]int{}
	for i, l := range ls {
		last[addrKey{l.NetworkID, l.Addr}] = i
	}
	uniq := make([]Lease, 0, len(last))
	for i, l := range ls {
		if last[addrKey{l.NetworkID, l.Addr}] == i {
			uniq = append(uniq, l)
		}
	}
	now := time.Now().UTC()
	var stamp any = now
	if dialectName == dialect.SQLite {
		// The driver would format each time value on every row; created_at and updated_at are
		// the same for the whole batch, so they are formatted once, exactly as the driver does.
		stamp = now.Format(sqliteTime)
	}
	for start, end := range multirow.Chunks(len(uniq), leaseChunk) {
		part := uniq[start:end]
		args := make([]any, 0, len(part)*leaseColumns)
		for _, l := range part {
			var mid any
			if l.MachineID != 0 {
				mid = l.MachineID
			}
			args = append(args, stamp, stamp, l.MAC, l.Addr.String(), string(l.State), l.Expires.UTC(), l.ClientID, l.Hostname, l.NetworkID, mid, l.Trace)
		}
		if _, err := tx.ExecContext(ctx, leaseUpsert.SQL(dialectName, len(part)), args...); err != nil {
			return fmt.Errorf("dhcp: save leases: %w", err)
		}
	}
	return nil
}

// sqliteTime is how github.com/mattn/go-sqlite3 writes a time.Time (its SQLiteTimestampFormats[0]).
const sqliteTime = "2006-01-02 15:04:05.999999999-07:00"

const (
	leaseColumns = 11
	leaseChunk   = 100 // 11 parameters a row: well under SQLite's bound-variable limit
)

// leaseUpsert is saveLeases' statement.
var leaseUpsert = multirow.NewInsert(
	"INSERT INTO leases (created_at, updated_at, mac, address, state, expires_at, client_id, hostname, network_id, machine_id, trace)",
	leaseColumns,
	" ON CONFLICT (network_id, address) DO UPDATE SET updated_at = excluded.updated_at, mac = excluded.mac, "+
		"state = excluded.state, expires_at = excluded.expires_at, client_id = excluded.client_id, "+
		"hostname = excluded.hostname, machine_id = excluded.machine_id, trace = excluded.trace")
