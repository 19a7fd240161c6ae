// Package inventory holds the rules of the inventory graph that span more than one record — a
// machine fits its rack and overlaps no other, a MAC is unique, an address lies inside its network
// and is allocated once — as ent hooks, so every writer (API, fixtures, discovery) obeys them. Rule
// violations are domain errors naming the GraphQL input field.
package inventory

import (
	"context"
	"net"
	"net/netip"
	"strings"

	"entgo.io/ent/dialect/sql"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/hook"
	"github.com/prybar/prybar/ent/ipallocation"
	"github.com/prybar/prybar/ent/machine"
	"github.com/prybar/prybar/ent/nic"
	"github.com/prybar/prybar/internal/domain"
)

// Install registers the inventory hooks on client.
func Install(client *ent.Client) {
	client.Use(refHook)
	client.NIC.Use(nicHook)
	client.Machine.Use(machineHook)
	client.Rack.Use(rackHook)
	client.IPAllocation.Use(allocationHook)
	client.IPRange.Use(rangeHook)
}

// NormalizeMAC accepts the usual spellings (aa:bb…, AA-BB…, aabb.ccdd.eeff) and returns the
// canonical lower-case colon form.
func NormalizeMAC(s string) (string, error) {
	hw, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil || len(hw) != 6 {
		return "", domain.Errorf("mac", domain.Invalid, "%q is not a 48-bit MAC address", s)
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

func networkPrefix(ctx context.Context, c *ent.Client, id int) (netip.Prefix, error) {
	n, err := c.Network.Get(ctx, id)
	if ent.IsNotFound(err) {
		return netip.Prefix{}, domain.Errorf("networkID", domain.NotFound, "network %d does not exist", id)
	} else if err != nil {
		return netip.Prefix{}, err
	}
	return netip.ParsePrefix(n.Cidr)
}

func allocationHook(next ent.Mutator) ent.Mutator {
	return hook.IPAllocationFunc(func(ctx context.Context, m *ent.IPAllocationMutation) (ent.Value, error) {
		addr, aok := m.Address()
		nid, nok := m.NetworkID()
		if !aok && !nok {
			return next.Mutate(ctx, m)
		}
		if !aok || !nok {
			id, ok := m.ID()
			if !ok {
				return next.Mutate(ctx, m) // bulk update: the unique index still guards
			}
			old, err := m.Client().IPAllocation.Get(ctx, id)
			if err != nil {
				return nil, err
			}
			if !aok {
				addr = old.Address
			}
			if !nok {
				nid = old.NetworkID
			}
		}
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return nil, domain.Errorf("address", domain.Invalid, "not an IP address: %q", addr)
		}
		pfx, err := networkPrefix(ctx, m.Client(), nid)
		if err != nil {
			return nil, err
		}
		if !pfx.Contains(a) {
			return nil, domain.Errorf("address", domain.OutOfRange, "%s is outside network %s", a, pfx)
		}
		m.SetAddress(a.String())
		q := m.Client().IPAllocation.Query().Where(ipallocation.NetworkID(nid), ipallocation.Address(a.String()))
		if id, ok := m.ID(); ok {
			q = q.Where(ipallocation.IDNEQ(id))
		}
		if n, err := q.Count(ctx); err != nil {
			return nil, err
		} else if n > 0 {
			return nil, domain.Errorf("address", domain.Duplicate, "%s is already allocated in %s", a, pfx)
		}
		return next.Mutate(ctx, m)
	})
}

func rangeHook(next ent.Mutator) ent.Mutator {
	return hook.IPRangeFunc(func(ctx context.Context, m *ent.IPRangeMutation) (ent.Value, error) {
		first, fok := m.First()
		last, lok := m.Last()
		nid, nok := m.NetworkID()
		if !fok && !lok && !nok {
			return next.Mutate(ctx, m)
		}
		if id, ok := m.ID(); ok && (!fok || !lok || !nok) {
			old, err := m.Client().IPRange.Get(ctx, id)
			if err != nil {
				return nil, err
			}
			if !fok {
				first = old.First
			}
			if !lok {
				last = old.Last
			}
			if !nok {
				nid = old.NetworkID
			}
		}
		f, err1 := netip.ParseAddr(first)
		l, err2 := netip.ParseAddr(last)
		if err1 != nil {
			return nil, domain.Errorf("first", domain.Invalid, "not an IP address: %q", first)
		}
		if err2 != nil {
			return nil, domain.Errorf("last", domain.Invalid, "not an IP address: %q", last)
		}
		pfx, err := networkPrefix(ctx, m.Client(), nid)
		if err != nil {
			return nil, err
		}
		if !pfx.Contains(f) {
			return nil, domain.Errorf("first", domain.OutOfRange, "%s is outside network %s", f, pfx)
		}
		if !pfx.Contains(l) {
			return nil, domain.Errorf("last", domain.OutOfRange, "%s is outside network %s", l, pfx)
		}
		if l.Less(f) {
			return nil, domain.Errorf("last", domain.Invalid, "range end %s is before its start %s", l, f)
		}
		return next.Mutate(ctx, m)
	})
}
