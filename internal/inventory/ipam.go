package inventory

import (
	"context"
	"net/netip"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/hook"
	"github.com/prybar/prybar/ent/ipallocation"
	"github.com/prybar/prybar/ent/iprange"
	"github.com/prybar/prybar/ent/network"
	"github.com/prybar/prybar/internal/domain"
)

// IPAM rules. A network is a real subnet: at least /8 (IPv4) or /16 (IPv6), not multicast or
// unspecified space (loopback is allowed on purpose: simulators, labs and the boot tests model their
// networks on 127.0.0.0/8), and it overlaps no other network of its site (networks without a
// site form one group). Its router, ranges and allocations lie inside it and never on the network
// or broadcast address — except in /31 and /32 (IPv4) and /127 and /128 (IPv6), point-to-point
// links where every address is a host (RFC 3021). IPv6 has no broadcast; its all-zero host address
// (subnet-router anycast) is reserved like IPv4's network address.

const (
	minBits4 = 8
	minBits6 = 16
)

// checkPrefix refuses prefixes that cannot be a managed subnet.
func checkPrefix(p netip.Prefix) error {
	a := p.Addr()
	switch {
	case a.Is4() && p.Bits() < minBits4, a.Is6() && p.Bits() < minBits6:
		return domain.Errorf("cidr", domain.Invalid, "%s is too large to be a subnet (at most /%d for IPv4, /%d for IPv6)", p, minBits4, minBits6)
	case a.IsUnspecified() && p.Bits() < a.BitLen() || a.Is4() && a.As4()[0] == 0:
		return domain.Errorf("cidr", domain.Invalid, "%s is the unspecified (\"this network\") range", p)
	case a.IsMulticast():
		return domain.Errorf("cidr", domain.Invalid, "%s is multicast space", p)
	}
	return nil
}

// pointToPoint reports whether every address of p is a host address.
func pointToPoint(p netip.Prefix) bool { return p.Addr().BitLen()-p.Bits() <= 1 }

// lastAddr is the highest address of p (IPv4's broadcast address).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	host := p.Addr().BitLen() - p.Bits()
	for i := len(b) - 1; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		b[i] |= byte(1<<n - 1)
		host -= n
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// checkHost refuses an address of p that is not a usable host address; what names it in the message.
func checkHost(field string, a netip.Addr, p netip.Prefix, what string) error {
	if !p.Contains(a) {
		return domain.Errorf(field, domain.OutOfRange, "%s %s is outside network %s", what, a, p)
	}
	if pointToPoint(p) {
		return nil
	}
	if a == p.Masked().Addr() {
		return domain.Errorf(field, domain.OutOfRange, "%s %s is the network address of %s", what, a, p)
	}
	if a.Is4() && a == lastAddr(p) {
		return domain.Errorf(field, domain.OutOfRange, "%s %s is the broadcast address of %s", what, a, p)
	}
	return nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, domain.Errorf("cidr", domain.Invalid, "%q is not a CIDR prefix such as 10.0.0.0/24", s)
	}
	if p.Masked() != p {
		return p, domain.Errorf("cidr", domain.Invalid, "%q has host bits set (the network is %s)", s, p.Masked())
	}
	return p, nil
}

func networkHook(next ent.Mutator) ent.Mutator {
	return hook.NetworkFunc(func(ctx context.Context, m *ent.NetworkMutation) (ent.Value, error) {
		cidr, cok := m.Cidr()
		router, rok := m.Router()
		_, sok := m.SiteID()
		if !cok && !rok && !sok && !m.SiteCleared() {
			return next.Mutate(ctx, m)
		}
		type state struct {
			id     int
			cidr   string
			router string
			site   *int
		}
		var states []state
		if m.Op().Is(ent.OpCreate) {
			s := state{cidr: cidr, router: router}
			if v, ok := m.SiteID(); ok {
				s.site = &v
			}
			states = append(states, s)
		} else {
			ids, err := m.IDs(ctx)
			if err != nil {
				return nil, err
			}
			for _, id := range ids {
				old, err := m.Client().Network.Get(ctx, id)
				if err != nil {
					return nil, err
				}
				s := state{id: id, cidr: old.Cidr, router: old.Router, site: old.SiteID}
				if cok {
					s.cidr = cidr
				}
				if rok {
					s.router = router
				}
				if m.RouterCleared() {
					s.router = ""
				}
				if v, ok := m.SiteID(); ok {
					s.site = &v
				}
				if m.SiteCleared() {
					s.site = nil
				}
				states = append(states, s)
			}
		}
		for _, s := range states {
			p, err := parsePrefix(s.cidr)
			if err != nil {
				return nil, err
			}
			if err := checkPrefix(p); err != nil {
				return nil, err
			}
			if s.router != "" {
				a, err := netip.ParseAddr(s.router)
				if err != nil {
					return nil, domain.Errorf("router", domain.Invalid, "%q is not an IP address", s.router)
				}
				if err := checkHost("router", a, p, "router"); err != nil {
					return nil, err
				}
			}
			if err := checkNetworkOverlap(ctx, m.Client(), s.id, s.site, p); err != nil {
				return nil, err
			}
			if s.id != 0 && cok {
				if err := checkNetworkContents(ctx, m.Client(), s.id, p); err != nil {
					return nil, err
				}
			}
		}
		return next.Mutate(ctx, m)
	})
}

// checkNetworkOverlap refuses a prefix that overlaps another network of the same site.
func checkNetworkOverlap(ctx context.Context, c *ent.Client, self int, site *int, p netip.Prefix) error {
	q := c.Network.Query().Where(network.IDNEQ(self))
	if site != nil {
		q = q.Where(network.SiteID(*site))
	} else {
		q = q.Where(network.SiteIDIsNil())
	}
	others, err := q.All(ctx)
	if err != nil {
		return err
	}
	for _, o := range others {
		op, err := netip.ParsePrefix(o.Cidr)
		if err == nil && op.Overlaps(p) {
			return domain.Errorf("cidr", domain.Overlap, "%s overlaps network %s (%s) in the same site", p, o.Name, op)
		}
	}
	return nil
}

// checkNetworkContents refuses a new prefix that would leave a range or allocation outside.
func checkNetworkContents(ctx context.Context, c *ent.Client, id int, p netip.Prefix) error {
	rs, err := c.IPRange.Query().Where(iprange.NetworkID(id)).All(ctx)
	if err != nil {
		return err
	}
	for _, r := range rs {
		for _, s := range []string{r.First, r.Last} {
			if a, err := netip.ParseAddr(s); err == nil && checkHost("cidr", a, p, "") != nil {
				return domain.Errorf("cidr", domain.OutOfRange, "range %s (%s–%s) would lie outside %s", rangeName(r), r.First, r.Last, p)
			}
		}
	}
	as, err := c.IPAllocation.Query().Where(ipallocation.NetworkID(id)).All(ctx)
	if err != nil {
		return err
	}
	for _, x := range as {
		if a, err := netip.ParseAddr(x.Address); err == nil && checkHost("cidr", a, p, "") != nil {
			return domain.Errorf("cidr", domain.OutOfRange, "allocated address %s would not be a host address of %s", a, p)
		}
	}
	return nil
}

func rangeName(r *ent.IPRange) string {
	if r.Name == "" {
		return "#" + itoa(r.ID)
	}
	return r.Name
}
