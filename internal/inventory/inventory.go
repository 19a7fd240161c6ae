// Package inventory holds the rules of the inventory graph that span more than one record — a
// machine fits its rack and overlaps no other, a MAC is unique, an address lies inside its network
// and is allocated once — as ent hooks, so every writer (API, fixtures, discovery) obeys them. Rule
// violations are domain errors naming the GraphQL input field.
package inventory

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"entgo.io/ent/dialect/sql"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/hook"
	"github.com/prybar/prybar/ent/ipallocation"
	"github.com/prybar/prybar/ent/iprange"
	"github.com/prybar/prybar/ent/machine"
	"github.com/prybar/prybar/ent/nic"
	"github.com/prybar/prybar/ent/rack"
	"github.com/prybar/prybar/internal/domain"
)

// Install registers the inventory hooks on client.
func Install(client *ent.Client) {
	client.Use(textHook, numberHook, refHook, edgeHook)
	client.BMC.Use(bmcHook)
	client.NIC.Use(nicHook)
	client.Machine.Use(machineHook)
	client.Rack.Use(rackHook)
	client.IPAllocation.Use(allocationHook)
	client.IPRange.Use(rangeHook)
	client.Network.Use(networkHook)
}

// NormalizeMAC accepts the usual spellings (aa:bb…, AA-BB…, aabb.ccdd.eeff) and returns the
// canonical lower-case colon form.
func NormalizeMAC(s string) (string, error) {
	hw, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil || len(hw) != 6 {
		return "", domain.Errorf("mac", domain.Invalid, "%q is not a 48-bit MAC address", s)
	}
	if err := checkMAC(hw); err != nil {
		return "", err
	}
	return hw.String(), nil
}

func nicHook(next ent.Mutator) ent.Mutator {
	return hook.NICFunc(func(ctx context.Context, m *ent.NICMutation) (ent.Value, error) {
		mac, ok := m.MAC()
		if !ok {
			return next.Mutate(ctx, m)
		}
		norm, err := NormalizeMAC(mac)
		if err != nil {
			return nil, err
		}
		m.SetMAC(norm)
		q := m.Client().NIC.Query().Where(nic.MAC(norm))
		if id, ok := m.ID(); ok {
			q = q.Where(nic.IDNEQ(id))
		}
		if n, err := q.Count(ctx); err != nil {
			return nil, err
		} else if n > 0 {
			return nil, domain.Errorf("mac", domain.Duplicate, "MAC %s is already assigned to another NIC", norm)
		}
		return next.Mutate(ctx, m)
	})
}

func machineHook(next ent.Mutator) ent.Mutator {
	return hook.MachineFunc(func(ctx context.Context, m *ent.MachineMutation) (ent.Value, error) {
		if name, ok := m.Name(); ok {
			m.SetName(strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), ".")))
		}
		_, rackSet := m.RackID()
		_, posSet := m.UPosition()
		_, hSet := m.UHeight()
		if !rackSet && !posSet && !hSet && !m.RackCleared() && !m.UPositionCleared() {
			return next.Mutate(ctx, m)
		}
		if m.Op().Is(ent.OpCreate) {
			if err := checkPlacement(ctx, m.Client(), 0, placementOf(m, nil)); err != nil {
				return nil, err
			}
			return next.Mutate(ctx, m)
		}
		ids, err := m.IDs(ctx)
		if err != nil {
			return nil, err
		}
		if len(ids) > 1 && (rackSet || posSet) {
			return nil, domain.Errorf("uPosition", domain.Invalid, "cannot place %d machines at one position", len(ids))
		}
		for _, id := range ids {
			old, err := m.Client().Machine.Get(ctx, id)
			if err != nil {
				return nil, err
			}
			if err := checkPlacement(ctx, m.Client(), id, placementOf(m, old)); err != nil {
				return nil, err
			}
		}
		return next.Mutate(ctx, m)
	})
}

type placement struct {
	rack   *int
	pos    *int
	height int
}

// placementOf merges the mutation's placement fields over the stored machine (nil on create).
func placementOf(m *ent.MachineMutation, old *ent.Machine) placement {
	p := placement{height: 1}
	if old != nil {
		p = placement{rack: old.RackID, pos: old.UPosition, height: old.UHeight}
	}
	if v, ok := m.RackID(); ok {
		p.rack = &v
	}
	if m.RackCleared() {
		p.rack = nil
	}
	if v, ok := m.UPosition(); ok {
		p.pos = &v
	}
	if m.UPositionCleared() {
		p.pos = nil
	}
	if v, ok := m.UHeight(); ok {
		p.height = v
	}
	return p
}

func checkPlacement(ctx context.Context, c *ent.Client, self int, p placement) error {
	if p.pos == nil {
		return nil
	}
	if p.rack == nil {
		return domain.Errorf("uPosition", domain.Invalid, "a rack position needs a rack (set rackID)")
	}
	r, err := c.Rack.Get(ctx, *p.rack)
	if ent.IsNotFound(err) {
		return domain.Errorf("rackID", domain.NotFound, "rack %d does not exist", *p.rack)
	} else if err != nil {
		return err
	}
	top := *p.pos + p.height - 1
	if p.height > r.Height {
		return domain.Errorf("uHeight", domain.OutOfRange, "machine is %dU tall but rack %s is %dU", p.height, r.Name, r.Height)
	}
	if *p.pos < 1 || top > r.Height {
		return domain.Errorf("uPosition", domain.OutOfRange, "U%d–U%d is outside rack %s (U1–U%d)", *p.pos, top, r.Name, r.Height)
	}
	q := c.Machine.Query().Where(
		machine.RackID(*p.rack),
		machine.UPositionNotNil(),
		machine.UPositionLTE(top),
		func(s *sql.Selector) {
			// top of the other machine >= our bottom; Arg renders the dialect's placeholder.
			s.Where(sql.P(func(b *sql.Builder) {
				b.WriteString(s.C(machine.FieldUPosition)).WriteString(" + ").WriteString(s.C(machine.FieldUHeight)).
					WriteString(" - 1 >= ").Arg(*p.pos)
			}))
		},
	)
	if self != 0 {
		q = q.Where(machine.IDNEQ(self))
	}
	other, err := q.First(ctx)
	if ent.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	return domain.Errorf("uPosition", domain.Overlap, "U%d–U%d overlaps %s at U%d–U%d in rack %s",
		*p.pos, top, other.Name, *other.UPosition, *other.UPosition+other.UHeight-1, r.Name)
}

func rackHook(next ent.Mutator) ent.Mutator {
	return hook.RackFunc(func(ctx context.Context, m *ent.RackMutation) (ent.Value, error) {
		if err := checkRackName(ctx, m); err != nil {
			return nil, err
		}
		h, ok := m.Height()
		if !ok || m.Op().Is(ent.OpCreate) {
			return next.Mutate(ctx, m)
		}
		ids, err := m.IDs(ctx)
		if err != nil {
			return nil, err
		}
		ms, err := m.Client().Machine.Query().Where(machine.RackIDIn(ids...), machine.UPositionNotNil()).All(ctx)
		if err != nil {
			return nil, err
		}
		for _, x := range ms {
			if top := *x.UPosition + x.UHeight - 1; top > h {
				return nil, domain.Errorf("height", domain.OutOfRange, "machine %s occupies U%d, above the new height %dU", x.Name, top, h)
			}
		}
		return next.Mutate(ctx, m)
	})
}

// checkRackName: rack names are unique within a site. Checked here so the error names the rack's
// name (the unique index spans site and name, and the database reports the site).
func checkRackName(ctx context.Context, m *ent.RackMutation) error {
	name, nok := m.Name()
	site, sok := m.SiteID()
	if !nok && !sok {
		return nil
	}
	var self int
	if !m.Op().Is(ent.OpCreate) {
		ids, err := m.IDs(ctx)
		if err != nil {
			return err
		}
		if len(ids) != 1 {
			return nil // bulk update: the unique index still guards
		}
		self = ids[0]
		old, err := m.Client().Rack.Get(ctx, self)
		if err != nil {
			return err
		}
		if !nok {
			name = old.Name
		}
		if !sok {
			site = old.SiteID
		}
	}
	n, err := m.Client().Rack.Query().Where(rack.SiteID(site), rack.Name(name), rack.IDNEQ(self)).Count(ctx)
	if err != nil {
		return err
	}
	if n > 0 {
		return domain.Errorf("name", domain.Duplicate, "the site already has a rack named %q", name)
	}
	return nil
}

func networkPrefix(ctx context.Context, c *ent.Client, id int) (netip.Prefix, error) {
	n, err := c.Network.Get(ctx, id)
	if ent.IsNotFound(err) {
		return netip.Prefix{}, domain.Errorf("networkID", domain.NotFound, "network %d does not exist", id)
	} else if err != nil {
		return netip.Prefix{}, err
	}
	return parsePrefix(n.Cidr)
}

func allocationHook(next ent.Mutator) ent.Mutator {
	return hook.IPAllocationFunc(func(ctx context.Context, m *ent.IPAllocationMutation) (ent.Value, error) {
		addr, aok := m.Address()
		nid, nok := m.NetworkID()
		if !aok && !nok {
			return next.Mutate(ctx, m)
		}
		type state struct {
			id   int
			addr string
			nid  int
		}
		var states []state
		if m.Op().Is(ent.OpCreate) {
			states = []state{{addr: addr, nid: nid}}
		} else {
			ids, err := m.IDs(ctx)
			if err != nil {
				return nil, err
			}
			if len(ids) > 1 && aok {
				return nil, domain.Errorf("address", domain.Invalid, "cannot give %d allocations one address", len(ids))
			}
			for _, id := range ids {
				old, err := m.Client().IPAllocation.Get(ctx, id)
				if err != nil {
					return nil, err
				}
				s := state{id: id, addr: old.Address, nid: old.NetworkID}
				if aok {
					s.addr = addr
				}
				if nok {
					s.nid = nid
				}
				states = append(states, s)
			}
		}
		for _, s := range states {
			a, err := netip.ParseAddr(s.addr)
			if err != nil {
				return nil, domain.Errorf("address", domain.Invalid, "%q is not an IP address", s.addr)
			}
			pfx, err := networkPrefix(ctx, m.Client(), s.nid)
			if err != nil {
				return nil, err
			}
			if err := checkHost("address", a, pfx, "address"); err != nil {
				return nil, err
			}
			if aok {
				m.SetAddress(a.String())
			}
			q := m.Client().IPAllocation.Query().Where(ipallocation.NetworkID(s.nid), ipallocation.Address(a.String()))
			if s.id != 0 {
				q = q.Where(ipallocation.IDNEQ(s.id))
			}
			if n, err := q.Count(ctx); err != nil {
				return nil, err
			} else if n > 0 {
				return nil, domain.Errorf("address", domain.Duplicate, "%s is already allocated in %s", a, pfx)
			}
		}
		return next.Mutate(ctx, m)
	})
}

func rangeHook(next ent.Mutator) ent.Mutator {
	return hook.IPRangeFunc(func(ctx context.Context, m *ent.IPRangeMutation) (ent.Value, error) {
		first, fok := m.First()
		last, lok := m.Last()
		nid, nok := m.NetworkID()
		name, nameOK := m.Name()
		if !fok && !lok && !nok && !nameOK {
			return next.Mutate(ctx, m)
		}
		type state struct {
			id                int
			first, last, name string
			nid               int
		}
		var states []state
		if m.Op().Is(ent.OpCreate) {
			states = []state{{first: first, last: last, name: name, nid: nid}}
		} else {
			ids, err := m.IDs(ctx)
			if err != nil {
				return nil, err
			}
			for _, id := range ids {
				old, err := m.Client().IPRange.Get(ctx, id)
				if err != nil {
					return nil, err
				}
				s := state{id: id, first: old.First, last: old.Last, name: old.Name, nid: old.NetworkID}
				if fok {
					s.first = first
				}
				if lok {
					s.last = last
				}
				if nok {
					s.nid = nid
				}
				if nameOK {
					s.name = name
				}
				if m.NameCleared() {
					s.name = ""
				}
				states = append(states, s)
			}
		}
		for _, s := range states {
			if err := checkRange(ctx, m.Client(), s.id, s.nid, s.first, s.last, s.name); err != nil {
				return nil, err
			}
		}
		return next.Mutate(ctx, m)
	})
}

// checkRange: both ends are host addresses of the network, first ≤ last, and the range neither
// overlaps another range of the network nor shares its name.
func checkRange(ctx context.Context, c *ent.Client, self, nid int, first, last, name string) error {
	f, err1 := netip.ParseAddr(first)
	l, err2 := netip.ParseAddr(last)
	if err1 != nil {
		return domain.Errorf("first", domain.Invalid, "%q is not an IP address", first)
	}
	if err2 != nil {
		return domain.Errorf("last", domain.Invalid, "%q is not an IP address", last)
	}
	pfx, err := networkPrefix(ctx, c, nid)
	if err != nil {
		return err
	}
	if err := checkHost("first", f, pfx, "range start"); err != nil {
		return err
	}
	if err := checkHost("last", l, pfx, "range end"); err != nil {
		return err
	}
	if l.Less(f) {
		return domain.Errorf("last", domain.Invalid, "range end %s is before its start %s", l, f)
	}
	others, err := c.IPRange.Query().Where(iprange.NetworkID(nid), iprange.IDNEQ(self)).All(ctx)
	if err != nil {
		return err
	}
	for _, o := range others {
		if name != "" && o.Name == name {
			return domain.Errorf("name", domain.Duplicate, "network %s already has a range named %q", pfx, name)
		}
		of, e1 := netip.ParseAddr(o.First)
		ol, e2 := netip.ParseAddr(o.Last)
		if e1 == nil && e2 == nil && !l.Less(of) && !ol.Less(f) {
			field := "first"
			if f.Less(of) {
				field = "last"
			}
			return domain.Errorf(field, domain.Overlap, "%s–%s overlaps range %s (%s–%s)", f, l, rangeName(o), of, ol)
		}
	}
	return nil
}

func itoa(i int) string { return strconv.Itoa(i) }
