package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/internal/domain"
	"github.com/prybar/prybar/internal/machinestate"
	"github.com/prybar/prybar/scheduler/nodestate"
)

// chunk bounds the ids in one IN (…) list: far below SQLite's bound-parameter limit and
// PostgreSQL's 65535, large enough that bulk work stays a handful of statements.
const chunk = 2000

// errLostRace is returned inside a transaction when a compare-and-swap on node-role states
// matched fewer rows than expected: another writer changed them since they were read. The
// transaction rolls back and the caller retries (or, for the API, reports a conflict).
var errLostRace = errors.New("scheduler: node-role state changed concurrently")

// transition is the single place where node-role states change. It applies ev to every node-role
// in cur (id → current state) with nodestate.Next, writes the changes as one compare-and-swap
// UPDATE per (from, to) pair (… WHERE id IN (…) AND state = from), and returns the new state of
// every node-role that changed.
//
// Illegal transitions are refused with a domain.IllegalTransition error naming the node-roles,
// unless skipIllegal is set: broadcasts to descendants (ParentFailed, DescendantReanneal) skip
// node-roles in TRANSITION, and the run's completion re-applies the block (see complete).
// extra, when not nil, adds fields to each UPDATE (status text, attempts …).
func transition(ctx context.Context, tx *ent.Tx, cur map[int]nodestate.State, ev nodestate.Event,
	skipIllegal bool, extra func(*ent.NodeRoleUpdate)) (map[int]nodestate.State, error) {
	type pair struct{ from, to nodestate.State }
	groups := map[pair][]int{}
	var illegal []string
	for id, s := range cur {
		to, err := nodestate.Next(s, ev)
		if err != nil {
			if skipIllegal {
				continue
			}
			illegal = append(illegal, fmt.Sprintf("node-role %d is %s", id, s))
			continue
		}
		if to == s {
			continue
		}
		groups[pair{s, to}] = append(groups[pair{s, to}], id)
	}
	if len(illegal) > 0 {
		sort.Strings(illegal)
		if len(illegal) > 10 {
			illegal = append(illegal[:10], fmt.Sprintf("and %d more", len(illegal)-10))
		}
		return nil, domain.Errorf("id", domain.IllegalTransition, "%s not allowed: %s", ev.Name(), strings.Join(illegal, ", "))
	}
	out := map[int]nodestate.State{}
	for p, ids := range groups {
		slices.Sort(ids)
		for start := 0; start < len(ids); start += chunk {
			part := ids[start:min(start+chunk, len(ids))]
			u := tx.NodeRole.Update().
				Where(noderole.IDIn(part...), noderole.StateEQ(noderole.State(p.from))).
				SetState(noderole.State(p.to))
			if extra != nil {
				extra(u)
			}
			n, err := u.Save(ctx)
			if err != nil {
				return nil, err
			}
			if n != len(part) {
				return nil, errLostRace
			}
		}
		for _, id := range ids {
			out[id] = p.to
		}
	}
	// The machines' derived state changes in the same transaction (see internal/machinestate).
	if err := machinestate.AfterTransition(ctx, tx, cur, out); err != nil {
		return nil, err
	}
	return out, nil
}

// statesOf reads the current state of the given node-roles.
func statesOf(ctx context.Context, tx *ent.Tx, ids []int) (map[int]nodestate.State, error) {
	out := make(map[int]nodestate.State, len(ids))
	for start := 0; start < len(ids); start += chunk {
		var rows []struct {
			ID    int    `json:"id"`
			State string `json:"state"`
		}
		err := tx.NodeRole.Query().Where(noderole.IDIn(ids[start:min(start+chunk, len(ids))]...)).
			Select(noderole.FieldID, noderole.FieldState).Scan(ctx, &rows)
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			out[r.ID] = nodestate.State(r.State)
		}
	}
	return out, nil
}

// The parent/child edge table. ent names its columns after the edge's owner: the first column
// holds the parent (the node-role owning the "children" edge), the second the child.
var (
	edgeTable  = noderole.ChildrenTable
	edgeParent = noderole.ChildrenPrimaryKey[0]
	edgeChild  = noderole.ChildrenPrimaryKey[1]
)

// edges returns (parent, child) pairs with the given column in ids, by plain indexed lookups:
// ent's HasParentsWith(…) predicates become subqueries over the whole edge table, which made
// every batch cost O(all node-roles) on PostgreSQL.
func edges(ctx context.Context, tx *ent.Tx, column string, ids []int) ([][2]int, error) {
	var out [][2]int
	for start := 0; start < len(ids); start += chunk {
		part := ids[start:min(start+chunk, len(ids))]
		args := make([]any, len(part))
		for i, id := range part {
			args[i] = id
		}
		q, qargs := entsql.Dialect(dialectOf(ctx)).Select(edgeParent, edgeChild).From(entsql.Table(edgeTable)).
			Where(entsql.In(column, args...)).Query()
		rows, err := tx.QueryContext(ctx, q, qargs...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var p, c int
			if err := rows.Scan(&p, &c); err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, [2]int{p, c})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// children returns the children of ids with their states.
func children(ctx context.Context, tx *ent.Tx, ids []int) (map[int]nodestate.State, error) {
	es, err := edges(ctx, tx, edgeParent, ids)
	if err != nil || len(es) == 0 {
		return map[int]nodestate.State{}, err
	}
	seen := map[int]bool{}
	var kids []int
	for _, e := range es {
		if !seen[e[1]] {
			seen[e[1]] = true
			kids = append(kids, e[1])
		}
	}
	return statesOf(ctx, tx, kids)
}

// descendants returns every node-role below ids (not ids themselves) with its state, walking the
// DAG one level per query.
func descendants(ctx context.Context, tx *ent.Tx, ids []int) (map[int]nodestate.State, error) {
	out := map[int]nodestate.State{}
	frontier := slices.Clone(ids)
	for len(frontier) > 0 {
		kids, err := children(ctx, tx, frontier)
		if err != nil {
			return nil, err
		}
		frontier = frontier[:0:0]
		for id, s := range kids {
			if _, seen := out[id]; !seen {
				out[id] = s
				frontier = append(frontier, id)
			}
		}
	}
	return out, nil
}

// blockDescendants sends ev (ParentFailed or DescendantReanneal) to every descendant of ids:
// TODO, ACTIVE and ERROR ones become BLOCKED; PROPOSED and BLOCKED stay; TRANSITION ones are
// left to their run's completion, which blocks them when a parent is no longer ACTIVE.
func blockDescendants(ctx context.Context, tx *ent.Tx, ids []int, ev nodestate.Event) (map[int]nodestate.State, error) {
	desc, err := descendants(ctx, tx, ids)
	if err != nil || len(desc) == 0 {
		return nil, err
	}
	return transition(ctx, tx, desc, ev, true, nil)
}

// unblockChildren moves the BLOCKED children of ids whose parents are now all ACTIVE to TODO.
func unblockChildren(ctx context.Context, tx *ent.Tx, ids []int) (map[int]nodestate.State, error) {
	kids, err := children(ctx, tx, ids)
	if err != nil {
		return nil, err
	}
	var blocked []int
	for id, s := range kids {
		if s == nodestate.Blocked {
			blocked = append(blocked, id)
		}
	}
	if len(blocked) == 0 {
		return nil, nil
	}
	waiting, err := notAllParentsActive(ctx, tx, blocked)
	if err != nil {
		return nil, err
	}
	cur := map[int]nodestate.State{}
	for _, id := range blocked {
		if !waiting[id] {
			cur[id] = nodestate.Blocked
		}
	}
	return transition(ctx, tx, cur, nodestate.ParentsActive{}, false, nil)
}

// notAllParentsActive returns those of ids that have a parent not ACTIVE.
func notAllParentsActive(ctx context.Context, tx *ent.Tx, ids []int) (map[int]bool, error) {
	es, err := edges(ctx, tx, edgeChild, ids)
	if err != nil || len(es) == 0 {
		return map[int]bool{}, err
	}
	seen := map[int]bool{}
	var parents []int
	for _, e := range es {
		if !seen[e[0]] {
			seen[e[0]] = true
			parents = append(parents, e[0])
		}
	}
	states, err := statesOf(ctx, tx, parents)
	if err != nil {
		return nil, err
	}
	out := map[int]bool{}
	for _, e := range es {
		if states[e[0]] != nodestate.Active {
			out[e[1]] = true
		}
	}
	return out, nil
}

type dialectKey struct{}

// dialectOf reports the SQL dialect of the store the transaction belongs to (the builder numbers
// parameters by it); Annealer.tx puts it in the context.
func dialectOf(ctx context.Context) string {
	d, _ := ctx.Value(dialectKey{}).(string)
	return d
}

// annealLockKey serializes the annealer's transactions on PostgreSQL ("anneal" in ASCII).
const annealLockKey = 0x616e6e65616c

// tx runs fn in an event-recording transaction of the annealer's store.
//
// State changes read the states of neighbours (a commit reads its parents, a completion its
// children) and write their own. Under PostgreSQL's READ COMMITTED two such transactions can each
// miss the other's write — a commit that saw its parent still running marks the child BLOCKED
// while the parent's completion, not seeing the uncommitted child, unblocks nothing — and the child
// would wait forever. The annealer's transactions therefore run one at a time under an advisory
// lock, as they do under SQLite's single writer. They are short and batched, so this costs little.
func (a *Annealer) tx(ctx context.Context, fn func(ctx context.Context, tx *ent.Tx) error) error {
	return a.txEpoch(ctx, nil, fn)
}

// txEpoch is tx for the leader's own writes (claims, completions): with epoch non-nil it first
// reads the leader epoch FOR SHARE (before the annealer lock, so a stalled transaction that holds
// the annealer lock also holds the epoch row, and a new leader's bump finds it and ends it) and
// refuses with errStaleEpoch when the database holds another epoch than *epoch.
func (a *Annealer) txEpoch(ctx context.Context, epoch *int64, fn func(ctx context.Context, tx *ent.Tx) error) error {
	ctx = context.WithValue(ctx, dialectKey{}, a.st.Dialect)
	return a.st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		if epoch != nil {
			cur, err := a.currentEpoch(ctx, tx, *epoch)
			if err != nil {
				return err
			}
			if cur != *epoch {
				return fmt.Errorf("%w: this process leads epoch %d, the database holds %d", errStaleEpoch, *epoch, cur)
			}
		}
		if a.st.Dialect == dialect.Postgres {
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", annealLockKey); err != nil {
				return fmt.Errorf("annealer lock: %w", err)
			}
		}
		return fn(ctx, tx)
	})
}
