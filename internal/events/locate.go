package events

import (
	"context"

	"entgo.io/ent/dialect/sql"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/bmc"
	"github.com/prybar/prybar/ent/disk"
	"github.com/prybar/prybar/ent/ipallocation"
	"github.com/prybar/prybar/ent/iprange"
	"github.com/prybar/prybar/ent/machine"
	"github.com/prybar/prybar/ent/network"
	"github.com/prybar/prybar/ent/nic"
	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/ent/operation"
	"github.com/prybar/prybar/ent/rack"
	"github.com/prybar/prybar/ent/run"
)

// location is where in the topology an event happened, for subscription filters.
type location struct{ site, rack, machine *int }

// refAs selects the id and one reference column as "ref", to scan into pair.
func refAs(col string) func(*sql.Selector) {
	return func(s *sql.Selector) { s.Select(s.C("id"), sql.As(s.C(col), "ref")) }
}

func ptr(i int) *int { return &i }

// locateAll fills the location of every event that does not have one yet, with one query per
// object type and hop (not per event), since the annealer writes events in bulk.
func locateAll(ctx context.Context, tx *ent.Tx, evs []*pending) error {
	byType := map[string][]int{}
	for _, p := range evs {
		if !p.located {
			typ, id := p.locateBy()
			byType[typ] = append(byType[typ], id)
		}
	}
	found := map[string]map[int]location{}
	for typ, ids := range byType {
		locs, err := locate(ctx, tx, typ, ids)
		if err != nil {
			return err
		}
		found[typ] = locs
	}
	for _, p := range evs {
		if !p.located {
			typ, id := p.locateBy()
			p.loc, p.located = found[typ][id], true
		}
	}
	return nil
}

func (p *pending) locateBy() (string, int) {
	if p.locType != "" {
		return p.locType, p.locID
	}
	return p.objectType, p.objectID
}

type pair struct {
	ID  int  `json:"id"`
	Ref *int `json:"ref"`
}

// maxIDs bounds one IN (…) list: SQLite refuses more than 32,766 bound variables.
const maxIDs = 5000

// locate maps object ids of type typ to their site, rack and machine.
func locate(ctx context.Context, tx *ent.Tx, typ string, ids []int) (map[int]location, error) {
	ids = unique(ids)
	if len(ids) > maxIDs {
		out := make(map[int]location, len(ids))
		for start := 0; start < len(ids); start += maxIDs {
			part, err := locate(ctx, tx, typ, ids[start:min(start+maxIDs, len(ids))])
			if err != nil {
				return nil, err
			}
			for k, v := range part {
				out[k] = v
			}
		}
		return out, nil
	}
	out := map[int]location{}
	if len(ids) == 0 {
		return out, nil
	}
	viaMachine := func(pairs []pair) error {
		var mids []int
		for _, p := range pairs {
			if p.Ref != nil {
				mids = append(mids, *p.Ref)
			}
		}
		ml, err := locate(ctx, tx, "machine", mids)
		if err != nil {
			return err
		}
		for _, p := range pairs {
			if p.Ref != nil {
				out[p.ID] = ml[*p.Ref]
			}
		}
		return nil
	}
	var pairs []pair
	var err error
	switch typ {
	case "site":
		for _, id := range ids {
			out[id] = location{site: ptr(id)}
		}
		return out, nil
	case "rack":
		err = tx.Rack.Query().Where(rack.IDIn(ids...)).Modify(refAs(rack.FieldSiteID)).Scan(ctx, &pairs)
		for _, p := range pairs {
			out[p.ID] = location{site: p.Ref, rack: ptr(p.ID)}
		}
		return out, err
	case "machine":
		var ms []struct {
			ID     int  `json:"id"`
			RackID *int `json:"rack_id"`
		}
		if err := tx.Machine.Query().Where(machine.IDIn(ids...)).Select(machine.FieldID, machine.FieldRackID).Scan(ctx, &ms); err != nil {
			return nil, err
		}
		var rids []int
		for _, m := range ms {
			if m.RackID != nil {
				rids = append(rids, *m.RackID)
			}
		}
		rl, err := locate(ctx, tx, "rack", rids)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			l := location{machine: ptr(m.ID)}
			if m.RackID != nil {
				l.rack, l.site = m.RackID, rl[*m.RackID].site
			}
			out[m.ID] = l
		}
		return out, nil
	case "nic":
		err = tx.NIC.Query().Where(nic.IDIn(ids...)).Modify(refAs(nic.FieldMachineID)).Scan(ctx, &pairs)
	case "disk":
		err = tx.Disk.Query().Where(disk.IDIn(ids...)).Modify(refAs(disk.FieldMachineID)).Scan(ctx, &pairs)
	case "bmc":
		err = tx.BMC.Query().Where(bmc.IDIn(ids...)).Modify(refAs(bmc.FieldMachineID)).Scan(ctx, &pairs)
	case "ipallocation":
		err = tx.IPAllocation.Query().Where(ipallocation.IDIn(ids...)).Modify(refAs(ipallocation.FieldMachineID)).Scan(ctx, &pairs)
	case "operation":
		err = tx.Operation.Query().Where(operation.IDIn(ids...)).Modify(refAs(operation.FieldMachineID)).Scan(ctx, &pairs)
	case "noderole":
		err = tx.NodeRole.Query().Where(noderole.IDIn(ids...)).Modify(refAs(noderole.FieldMachineID)).Scan(ctx, &pairs)
	case "run":
		var rs []pair
		if err := tx.Run.Query().Where(run.IDIn(ids...)).Modify(refAs(run.FieldNodeRoleID)).Scan(ctx, &rs); err != nil {
			return nil, err
		}
		var nrids []int
		for _, r := range rs {
			nrids = append(nrids, *r.Ref)
		}
		nl, err := locate(ctx, tx, "noderole", nrids)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			out[r.ID] = nl[*r.Ref]
		}
		return out, nil
	case "network":
		err = tx.Network.Query().Where(network.IDIn(ids...)).Modify(refAs(network.FieldSiteID)).Scan(ctx, &pairs)
		for _, p := range pairs {
			out[p.ID] = location{site: p.Ref}
		}
		return out, err
	case "iprange":
		err = tx.IPRange.Query().Where(iprange.IDIn(ids...)).Modify(refAs(iprange.FieldNetworkID)).Scan(ctx, &pairs)
		if err != nil {
			return nil, err
		}
		var nids []int
		for _, p := range pairs {
			nids = append(nids, *p.Ref)
		}
		nl, err := locate(ctx, tx, "network", nids)
		for _, p := range pairs {
			out[p.ID] = nl[*p.Ref]
		}
		return out, err
	default:
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	return out, viaMachine(pairs)
}

func unique(ids []int) []int {
	seen := make(map[int]bool, len(ids))
	out := ids[:0:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
