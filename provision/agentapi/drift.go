package agentapi

import (
	"encoding/json"
	"sort"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/provision/agent"
)

// Drift compares what the records plan for machine m (loaded with its NICs and disks) with what
// the agent found. Only planned facts are compared: a record without disks plans none, so
// nothing about disks is drift. The result has a key per differing fact (empty map: no drift):
//
//	nics:        {missing: [mac…], extra: [mac…]}
//	disks:       {planned: n, found: n, missing: [{name, sizeBytes}…], extra: […]}
//	cpuCount:    {planned: n, found: n}
//	memoryBytes: {planned: n, found: n}
func Drift(m *ent.Machine, inv agent.Inventory) map[string]any {
	d := map[string]any{}
	if len(m.Edges.Nics) > 0 {
		found := map[string]bool{}
		for _, n := range inv.NICs {
			found[n.MAC] = true
		}
		planned := map[string]bool{}
		missing, extra := []string{}, []string{}
		for _, n := range m.Edges.Nics {
			planned[n.MAC] = true
			if !found[n.MAC] {
				missing = append(missing, n.MAC)
			}
		}
		for _, n := range inv.NICs {
			if !planned[n.MAC] {
				extra = append(extra, n.MAC)
			}
		}
		if len(missing)+len(extra) > 0 {
			sort.Strings(missing)
			sort.Strings(extra)
			d["nics"] = map[string]any{"missing": missing, "extra": extra}
		}
	}
	if len(m.Edges.Disks) > 0 {
		type dk struct {
			Name      string `json:"name"`
			SizeBytes int64  `json:"sizeBytes"`
		}
		found := make([]*agent.Disk, len(inv.Disks))
		for i := range inv.Disks {
			found[i] = &inv.Disks[i]
		}
		var missing []dk
		var unmatched []*ent.Disk
		// First the same name and size, then any disk of the same size: a renamed disk (sda →
		// sdb after a controller change) is not drift, a disk of another size is.
		take := func(ok func(*agent.Disk) bool) bool {
			for i, f := range found {
				if f != nil && ok(f) {
					found[i] = nil
					return true
				}
			}
			return false
		}
		for _, p := range m.Edges.Disks {
			if !take(func(f *agent.Disk) bool { return f.Name == p.Name && f.SizeBytes == p.SizeBytes }) {
				unmatched = append(unmatched, p)
			}
		}
		for _, p := range unmatched {
			if !take(func(f *agent.Disk) bool { return f.SizeBytes == p.SizeBytes }) {
				missing = append(missing, dk{p.Name, p.SizeBytes})
			}
		}
		var extra []dk
		for _, f := range found {
			if f != nil {
				extra = append(extra, dk{f.Name, f.SizeBytes})
			}
		}
		if len(missing)+len(extra) > 0 {
			d["disks"] = map[string]any{"planned": len(m.Edges.Disks), "found": len(inv.Disks),
				"missing": orEmpty(missing), "extra": orEmpty(extra)}
		}
	}
	if m.CPUCount > 0 && m.CPUCount != inv.CPU.Count {
		d["cpuCount"] = map[string]any{"planned": m.CPUCount, "found": inv.CPU.Count}
	}
	if m.MemoryBytes > 0 && m.MemoryBytes != inv.MemoryBytes {
		d["memoryBytes"] = map[string]any{"planned": m.MemoryBytes, "found": inv.MemoryBytes}
	}
	return normalize(d)
}

func orEmpty[T any](l []T) []T {
	if l == nil {
		return []T{}
	}
	return l
}

// normalize round-trips v through JSON, so a computed drift compares equal to the stored one.
func normalize(v map[string]any) map[string]any {
	out := map[string]any{}
	if len(v) == 0 {
		return out
	}
	b, _ := json.Marshal(v)
	_ = json.Unmarshal(b, &out)
	return out
}
