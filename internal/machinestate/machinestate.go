// Package machinestate derives a machine's lifecycle state (NEW, DISCOVERED, READY, BUSY, ERROR)
// from the states of its node-roles, as OpenCrowbar derives a node's state from its node-roles.
//
// Derive is the rule, a pure function over counts so it can be table-tested. Sync applies it
// inside the transaction that changed node-roles (the annealer's transition, a deployment or
// machine delete), so a machine's stored state never lags its node-roles and every change is a
// machine.updated event in the same commit.
package machinestate

import (
	"context"
	"slices"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/machine"
	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/scheduler/nodestate"
)

// State is a machine's lifecycle state as stored (machine.State).
type State = machine.State

// Facts are what the derivation looks at for one machine.
type Facts struct {
	// Counts of the machine's node-roles per state.
	Counts map[nodestate.State]int
	// BlockedByFailure: at least one BLOCKED node-role has an ancestor in ERROR (on this machine
	// or another), so it will not move until an operator retries that ancestor.
	BlockedByFailure bool
	// Discovered: the machine has reported an inventory (its discovery data is set).
	Discovered bool
}

// Derive returns the machine state for f. The first matching row wins:
//
//	any node-role ERROR                           → ERROR
//	any BLOCKED node-role with an ERROR ancestor  → ERROR (stuck behind a failure)
//	any TODO, TRANSITION or BLOCKED               → BUSY  (work is queued, running or waiting on parents)
//	≥ 1 ACTIVE (the rest PROPOSED at most)        → READY
//	no committed node-role, discovery data set    → DISCOVERED
//	no committed node-role                        → NEW
//
// PROPOSED node-roles are drafts: they count for nothing until committed, so binding roles does
// not change a machine's state and a READY machine with a new proposal stays READY.
func Derive(f Facts) State {
	c := f.Counts
	switch {
	case c[nodestate.Error] > 0:
		return machine.StateERROR
	case c[nodestate.Blocked] > 0 && f.BlockedByFailure:
		return machine.StateERROR
	case c[nodestate.Todo] > 0 || c[nodestate.Transition] > 0 || c[nodestate.Blocked] > 0:
		return machine.StateBUSY
	case c[nodestate.Active] > 0:
		return machine.StateREADY
	case f.Discovered:
		return machine.StateDISCOVERED
	default:
		return machine.StateNEW
	}
}

// chunk bounds the ids in one IN (…) list (below SQLite's bound-parameter limit).
const chunk = 2000

// AfterTransition is called by the annealer's transition with the node-roles it changed (id →
// state before) and refreshes the machines concerned: the machines of the changed node-roles
// and, when a node-role entered or left ERROR, the machines of its descendants (whose BLOCKED
// node-roles are, or no longer are, stuck behind a failure).
func AfterTransition(ctx context.Context, tx *ent.Tx, before map[int]nodestate.State, after map[int]nodestate.State) error {
	if len(after) == 0 {
		return nil
	}
	ids := make([]int, 0, len(after))
	var errorEdge []int
	for id, to := range after {
		if keepsState(before[id], to) {
			continue
		}
		ids = append(ids, id)
		if to == nodestate.Error || before[id] == nodestate.Error {
			errorEdge = append(errorEdge, id)
		}
	}
	if len(errorEdge) > 0 {
		desc, err := descendants(ctx, tx, errorEdge)
		if err != nil {
			return err
		}
		ids = append(ids, desc...)
	}
	ms, err := machinesOf(ctx, tx, ids)
	if err != nil {
		return err
	}
	return Sync(ctx, tx, ms)
}

// keepsState reports a node-role change that cannot change its machine's derived state, so the
// hot path (a run starting, a child unblocking) costs no queries. Both ends count as "work
// pending" (BUSY) and neither is ERROR or BLOCKED, so the ERROR rows and the BUSY row of Derive
// see the same answer before and after. (TODO → BLOCKED is not here: ParentFailed makes it, and
// it can turn a machine ERROR.)
func keepsState(from, to nodestate.State) bool {
	switch {
	case from == nodestate.Todo && to == nodestate.Transition, // Start
		from == nodestate.Blocked && to == nodestate.Todo,    // ParentsActive: its parents are ACTIVE, so no ERROR ancestor held it
		from == nodestate.Transition && to == nodestate.Todo: // Recover (idempotent)
		return true
	}
	return false
}

// machinesOf returns the distinct machines of the node-roles ids.
func machinesOf(ctx context.Context, tx *ent.Tx, ids []int) ([]int, error) {
	slices.Sort(ids)
	ids = slices.Compact(ids)
	seen := map[int]bool{}
	var out []int
	for start := 0; start < len(ids); start += chunk {
		var ms []int
		err := tx.NodeRole.Query().Where(noderole.IDIn(ids[start:min(start+chunk, len(ids))]...)).
			Unique(true).Select(noderole.FieldMachineID).Scan(ctx, &ms)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	return out, nil
}

// descendants returns every node-role below ids, one level per query. Only failures and retries
// take this path, so ent's edge predicate (a subquery) is cheap enough here.
func descendants(ctx context.Context, tx *ent.Tx, ids []int) ([]int, error) {
	seen := map[int]bool{}
	var out []int
	frontier := slices.Clone(ids)
	for len(frontier) > 0 {
		var next []int
		for start := 0; start < len(frontier); start += chunk {
			kids, err := tx.NodeRole.Query().
				Where(noderole.HasParentsWith(noderole.IDIn(frontier[start:min(start+chunk, len(frontier))]...))).IDs(ctx)
			if err != nil {
				return nil, err
			}
			for _, k := range kids {
				if !seen[k] {
					seen[k] = true
					out = append(out, k)
					next = append(next, k)
				}
			}
		}
		frontier = next
	}
	return out, nil
}

// blockedByFailure reports which of the BLOCKED node-roles ids have an ancestor in ERROR.
func blockedByFailure(ctx context.Context, tx *ent.Tx, ids []int) (map[int]bool, error) {
	out := map[int]bool{}
	for _, id := range ids {
		seen := map[int]bool{id: true}
		frontier := []int{id}
		for len(frontier) > 0 && !out[id] {
			ps, err := tx.NodeRole.Query().Where(noderole.HasChildrenWith(noderole.IDIn(frontier...))).
				Select(noderole.FieldID, noderole.FieldState).All(ctx)
			if err != nil {
				return nil, err
			}
			frontier = frontier[:0]
			for _, p := range ps {
				if p.State == noderole.StateERROR {
					out[id] = true
					break
				}
				if !seen[p.ID] {
					seen[p.ID] = true
					frontier = append(frontier, p.ID)
				}
			}
		}
	}
	return out, nil
}

// Sync re-derives the state of the given machines from their node-roles and writes the ones that
// changed (each write is a machine.updated event with the new state). Unknown ids are ignored, so
// callers may pass machines that a delete removed.
func Sync(ctx context.Context, tx *ent.Tx, machineIDs []int) error {
	slices.Sort(machineIDs)
	machineIDs = slices.Compact(machineIDs)
	for start := 0; start < len(machineIDs); start += chunk {
		if err := syncChunk(ctx, tx, machineIDs[start:min(start+chunk, len(machineIDs))]); err != nil {
			return err
		}
	}
	return nil
}

func syncChunk(ctx context.Context, tx *ent.Tx, ids []int) error {
	var rows []struct {
		MachineID int    `json:"machine_id"`
		State     string `json:"state"`
		Count     int    `json:"count"`
	}
	err := tx.NodeRole.Query().Where(noderole.MachineIDIn(ids...)).
		GroupBy(noderole.FieldMachineID, noderole.FieldState).Aggregate(ent.Count()).Scan(ctx, &rows)
	if err != nil {
		return err
	}
	facts := make(map[int]*Facts, len(ids))
	for _, id := range ids {
		facts[id] = &Facts{Counts: map[nodestate.State]int{}}
	}
	var withBlocked []int
	for _, r := range rows {
		facts[r.MachineID].Counts[nodestate.State(r.State)] = r.Count
		if nodestate.State(r.State) == nodestate.Blocked {
			withBlocked = append(withBlocked, r.MachineID)
		}
	}
	// A BLOCKED node-role can only be stuck behind a failure when some node-role is in ERROR:
	// one indexed existence check keeps the ancestor walk off the common path.
	if len(withBlocked) > 0 {
		anyErr, err := tx.NodeRole.Query().Where(noderole.StateEQ(noderole.StateERROR)).Exist(ctx)
		if err != nil {
			return err
		}
		if anyErr {
			for _, m := range withBlocked {
				if facts[m].Counts[nodestate.Error] > 0 {
					continue // ERROR already, whatever blocks
				}
				blocked, err := tx.NodeRole.Query().Where(noderole.MachineID(m), noderole.StateEQ(noderole.StateBLOCKED)).IDs(ctx)
				if err != nil {
					return err
				}
				stuck, err := blockedByFailure(ctx, tx, blocked)
				if err != nil {
					return err
				}
				facts[m].BlockedByFailure = len(stuck) > 0
			}
		}
	}
	cur, err := tx.Machine.Query().Where(machine.IDIn(ids...)).Select(machine.FieldID, machine.FieldState).All(ctx)
	if err != nil {
		return err
	}
	want := map[State][]int{}
	var needDiscovery []int
	for _, m := range cur {
		f := facts[m.ID]
		if uncommitted(f.Counts) {
			needDiscovery = append(needDiscovery, m.ID)
			continue
		}
		if s := Derive(*f); s != m.State {
			want[s] = append(want[s], m.ID)
		}
	}
	if len(needDiscovery) > 0 {
		discovered, err := tx.Machine.Query().Where(machine.IDIn(needDiscovery...), machine.DiscoveryNotNil()).IDs(ctx)
		if err != nil {
			return err
		}
		for _, id := range discovered {
			facts[id].Discovered = true
		}
		for _, m := range cur {
			if f := facts[m.ID]; uncommitted(f.Counts) {
				if s := Derive(*f); s != m.State {
					want[s] = append(want[s], m.ID)
				}
			}
		}
	}
	for s, ms := range want {
		if err := tx.Machine.Update().Where(machine.IDIn(ms...)).SetState(s).Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

// uncommitted reports whether a machine has no committed node-role (none, or only PROPOSED).
func uncommitted(c map[nodestate.State]int) bool {
	for s, n := range c {
		if s != nodestate.Proposed && n > 0 {
			return false
		}
	}
	return true
}
