package inventory

import (
	"context"
	"fmt"
	"strings"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/bmc"
	"github.com/prybar/prybar/ent/disk"
	"github.com/prybar/prybar/ent/ipallocation"
	"github.com/prybar/prybar/ent/iprange"
	"github.com/prybar/prybar/ent/machine"
	"github.com/prybar/prybar/ent/network"
	"github.com/prybar/prybar/ent/nic"
	"github.com/prybar/prybar/ent/rack"
	"github.com/prybar/prybar/internal/domain"
)

// Edges set from the parent's side (updateMachine(addNicIDs:), createRack(machineIDs:) …) would be
// written by ent as bare UPDATEs of the children's foreign keys, past every rule the children's
// hooks enforce (a machine moved into a rack onto another's U, an allocation moved into a network
// it is outside of) and, for a required reference, into a NOT NULL failure. edgeHook rewrites them
// as one update of each child, through the child's hooks, with its own event:
//
//   - adding a child moves it to this parent, if the child's rules allow;
//   - removing or clearing a required reference (a NIC's machine, a range's network …) is refused;
//   - removing an optional reference clears it on the children that actually had it; removing an id
//     that is not attached is a no-op, and a mutation left without changes writes nothing (no event).

type childEdge struct {
	what     string // the child's name in messages
	required bool
	// attached returns those of ids (all when ids is nil) whose reference points at parent.
	attached func(ctx context.Context, c *ent.Client, parent int, ids []int) ([]int, error)
	attach   func(ctx context.Context, c *ent.Client, child, parent int) error
	detach   func(ctx context.Context, c *ent.Client, child int) error
}

var parentEdges = map[string]map[string]childEdge{
	"Machine": {
		"nics": {what: "NIC", required: true,
			attached: func(ctx context.Context, c *ent.Client, p int, ids []int) ([]int, error) {
				q := c.NIC.Query().Where(nic.MachineID(p))
				if ids != nil {
					q = q.Where(nic.IDIn(ids...))
				}
				return q.IDs(ctx)
			},
			attach: func(ctx context.Context, c *ent.Client, id, p int) error {
				return c.NIC.UpdateOneID(id).SetMachineID(p).Exec(ctx)
			}},
		"disks": {what: "disk", required: true,
			attached: func(ctx context.Context, c *ent.Client, p int, ids []int) ([]int, error) {
				q := c.Disk.Query().Where(disk.MachineID(p))
				if ids != nil {
					q = q.Where(disk.IDIn(ids...))
				}
				return q.IDs(ctx)
			},
			attach: func(ctx context.Context, c *ent.Client, id, p int) error {
				return c.Disk.UpdateOneID(id).SetMachineID(p).Exec(ctx)
			}},
		"bmc": {what: "BMC", required: true,
			attached: func(ctx context.Context, c *ent.Client, p int, ids []int) ([]int, error) {
				q := c.BMC.Query().Where(bmc.MachineID(p))
				if ids != nil {
					q = q.Where(bmc.IDIn(ids...))
				}
				return q.IDs(ctx)
			},
			attach: func(ctx context.Context, c *ent.Client, id, p int) error {
				if other, err := c.BMC.Query().Where(bmc.MachineID(p), bmc.IDNEQ(id)).FirstID(ctx); err == nil {
					return domain.Errorf("", domain.Conflict, "the machine already has BMC %d: delete it first", other)
				} else if !ent.IsNotFound(err) {
					return err
				}
				return c.BMC.UpdateOneID(id).SetMachineID(p).Exec(ctx)
			}},
		"allocations": {what: "allocation",
			attached: func(ctx context.Context, c *ent.Client, p int, ids []int) ([]int, error) {
				q := c.IPAllocation.Query().Where(ipallocation.MachineID(p))
				if ids != nil {
					q = q.Where(ipallocation.IDIn(ids...))
				}
				return q.IDs(ctx)
			},
			attach: func(ctx context.Context, c *ent.Client, id, p int) error {
				return c.IPAllocation.UpdateOneID(id).SetMachineID(p).Exec(ctx)
			},
			detach: func(ctx context.Context, c *ent.Client, id int) error {
				return c.IPAllocation.UpdateOneID(id).ClearMachineID().Exec(ctx)
			}},
	},
	"Network": {
		"ranges": {what: "range", required: true,
			attached: func(ctx context.Context, c *ent.Client, p int, ids []int) ([]int, error) {
				q := c.IPRange.Query().Where(iprange.NetworkID(p))
				if ids != nil {
					q = q.Where(iprange.IDIn(ids...))
				}
				return q.IDs(ctx)
			},
			attach: func(ctx context.Context, c *ent.Client, id, p int) error {
				return c.IPRange.UpdateOneID(id).SetNetworkID(p).Exec(ctx)
			}},
		"allocations": {what: "allocation", required: true,
			attached: func(ctx context.Context, c *ent.Client, p int, ids []int) ([]int, error) {
				q := c.IPAllocation.Query().Where(ipallocation.NetworkID(p))
				if ids != nil {
					q = q.Where(ipallocation.IDIn(ids...))
				}
				return q.IDs(ctx)
			},
			attach: func(ctx context.Context, c *ent.Client, id, p int) error {
				return c.IPAllocation.UpdateOneID(id).SetNetworkID(p).Exec(ctx)
			}},
	},
	"Rack": {
		"machines": {what: "machine",
			attached: func(ctx context.Context, c *ent.Client, p int, ids []int) ([]int, error) {
				q := c.Machine.Query().Where(machine.RackID(p))
				if ids != nil {
					q = q.Where(machine.IDIn(ids...))
				}
				return q.IDs(ctx)
			},
			attach: func(ctx context.Context, c *ent.Client, id, p int) error {
				return c.Machine.UpdateOneID(id).SetRackID(p).Exec(ctx)
			},
			// A machine leaves the rack with its U position: a position needs a rack.
			detach: func(ctx context.Context, c *ent.Client, id int) error {
				return c.Machine.UpdateOneID(id).ClearRack().ClearUPosition().Exec(ctx)
			}},
	},
	"Site": {
		"racks": {what: "rack", required: true,
			attached: func(ctx context.Context, c *ent.Client, p int, ids []int) ([]int, error) {
				q := c.Rack.Query().Where(rack.SiteID(p))
				if ids != nil {
					q = q.Where(rack.IDIn(ids...))
				}
				return q.IDs(ctx)
			},
			attach: func(ctx context.Context, c *ent.Client, id, p int) error {
				return c.Rack.UpdateOneID(id).SetSiteID(p).Exec(ctx)
			}},
		"networks": {what: "network",
			attached: func(ctx context.Context, c *ent.Client, p int, ids []int) ([]int, error) {
				q := c.Network.Query().Where(network.SiteID(p))
				if ids != nil {
					q = q.Where(network.IDIn(ids...))
				}
				return q.IDs(ctx)
			},
			attach: func(ctx context.Context, c *ent.Client, id, p int) error {
				return c.Network.UpdateOneID(id).SetSiteID(p).Exec(ctx)
			},
			detach: func(ctx context.Context, c *ent.Client, id int) error {
				return c.Network.UpdateOneID(id).ClearSiteID().Exec(ctx)
			}},
	},
}

// inputName is the GraphQL input field for an edge operation: machineIDs / addMachineIDs /
// removeMachineIDs / clearMachines; bmcID / clearBmc for the one-to-one BMC.
func inputName(op, edge string) string {
	single := strings.TrimSuffix(edge, "s")
	title := strings.ToUpper(single[:1]) + single[1:]
	unique := edge == "bmc"
	switch op {
	case "create":
		if unique {
			return single + "ID"
		}
		return single + "IDs"
	case "add":
		if unique {
			return single + "ID"
		}
		return "add" + title + "IDs"
	case "remove":
		return "remove" + title + "IDs"
	default:
		return "clear" + strings.ToUpper(edge[:1]) + edge[1:]
	}
}

func toInts(vs []ent.Value) []int {
	out := make([]int, 0, len(vs))
	for _, v := range vs {
		if id, ok := v.(int); ok {
			out = append(out, id)
		}
	}
	return out
}

// relabel points a child's rule violation at the parent's input field that caused it.
func relabel(err error, field, what string, id int) error {
	if de, ok := domain.As(err); ok {
		return domain.Errorf(field, de.Code, "%s %d: %s", what, id, strings.TrimPrefix(de.Error(), ": "))
	}
	return err
}

type mutationWithID interface {
	ent.Mutation
	Client() *ent.Client
	ID() (int, bool)
	IDs(ctx context.Context) ([]int, error)
	ResetEdge(name string) error
}

func edgeHook(next ent.Mutator) ent.Mutator {
	return ent.MutateFunc(func(ctx context.Context, m ent.Mutation) (ent.Value, error) {
		table := parentEdges[m.Type()]
		mm, ok := m.(mutationWithID)
		if table == nil || !ok || m.Op().Is(ent.OpDelete|ent.OpDeleteOne) {
			return next.Mutate(ctx, m)
		}
		c := mm.Client()
		type move struct {
			e           childEdge
			field       string
			parent      int // 0 on create: the new record
			attach, det []int
		}
		var moves []move
		touched := false
		create := m.Op().Is(ent.OpCreate)
		var parents []int
		if !create {
			ids, err := mm.IDs(ctx)
			if err != nil {
				return nil, err
			}
			parents = ids
		}
		for name, e := range table {
			added := toInts(m.AddedIDs(name))
			removed := toInts(m.RemovedIDs(name))
			cleared := m.EdgeCleared(name)
			if len(added) == 0 && len(removed) == 0 && !cleared {
				continue
			}
			touched = true
			if create {
				moves = append(moves, move{e: e, field: inputName("create", name), attach: added})
			} else {
				if len(added) > 0 && len(parents) != 1 {
					return nil, domain.Errorf(inputName("add", name), domain.Invalid, "cannot add the same %s to %d records", e.what, len(parents))
				}
				for _, p := range parents {
					var det []int
					field := inputName("remove", name)
					var sel []int
					if cleared {
						field = inputName("clear", name)
					} else if len(removed) > 0 {
						sel = removed
					}
					if cleared || len(removed) > 0 {
						ids, err := e.attached(ctx, c, p, sel)
						if err != nil {
							return nil, err
						}
						if len(ids) > 0 && e.required {
							return nil, domain.Errorf(field, domain.Invalid,
								"%s %d cannot exist without its %s: delete it, or move it to another %s",
								e.what, ids[0], strings.ToLower(m.Type()), strings.ToLower(m.Type()))
						}
						det = ids
					}
					moves = append(moves, move{e: e, field: inputName("add", name), parent: p, attach: added, det: det})
				}
			}
			if err := mm.ResetEdge(name); err != nil {
				return nil, err
			}
		}
		if !touched {
			return next.Mutate(ctx, m)
		}
		var v ent.Value
		if !create && noChanges(m) {
			// Only edge operations: the parent row itself does not change (and writes no event).
			if len(parents) == 1 {
				var err error
				if v, err = reload(ctx, c, m.Type(), parents[0]); err != nil {
					return nil, err
				}
			}
		} else {
			var err error
			if v, err = next.Mutate(ctx, m); err != nil {
				return nil, err
			}
			if create {
				id, _ := mm.ID()
				parents = []int{id}
			}
		}
		for _, mv := range moves {
			p := mv.parent
			if p == 0 {
				p = parents[0]
			}
			for _, id := range mv.det {
				if err := mv.e.detach(ctx, c, id); err != nil {
					return nil, relabel(err, strings.Replace(mv.field, "add", "remove", 1), mv.e.what, id)
				}
			}
			for _, id := range mv.attach {
				if err := mv.e.attach(ctx, c, id, p); err != nil {
					return nil, relabel(err, mv.field, mv.e.what, id)
				}
			}
		}
		if !create && len(parents) == 1 {
			// Reload so the answer shows the children moved above.
			return reload(ctx, c, m.Type(), parents[0])
		}
		return v, nil
	})
}

// noChanges reports whether an update sets nothing but its timestamp.
func noChanges(m ent.Mutation) bool {
	for _, f := range m.Fields() {
		if f != "updated_at" {
			return false
		}
	}
	return len(m.ClearedFields()) == 0 && len(m.AddedEdges()) == 0 && len(m.RemovedEdges()) == 0 && len(m.ClearedEdges()) == 0
}

func reload(ctx context.Context, c *ent.Client, typ string, id int) (ent.Value, error) {
	switch typ {
	case "Machine":
		return c.Machine.Get(ctx, id)
	case "Network":
		return c.Network.Get(ctx, id)
	case "Rack":
		return c.Rack.Get(ctx, id)
	case "Site":
		return c.Site.Get(ctx, id)
	}
	return nil, fmt.Errorf("inventory: no reload for %s", typ)
}
