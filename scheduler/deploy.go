package scheduler

import (
	"context"
	"fmt"
	"reflect"

	"entgo.io/ent/dialect"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/deployment"
	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/internal/domain"
	"github.com/prybar/prybar/scheduler/nodestate"
)

// SystemDeployment is the root of the deployment tree; it exists from start-up, committed.
const SystemDeployment = "system"

// EnsureSystem creates the "system" deployment (COMMITTED) when it is missing and returns it.
func (a *Annealer) EnsureSystem(ctx context.Context) (*ent.Deployment, error) {
	if err := a.ensureIndexes(ctx); err != nil {
		return nil, err
	}
	if d, err := a.st.Client.Deployment.Query().Where(deployment.Name(SystemDeployment)).Only(ctx); err == nil {
		return d, nil
	} else if !ent.IsNotFound(err) {
		return nil, err
	}
	var d *ent.Deployment
	err := a.tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		var err error
		d, err = tx.Deployment.Create().SetName(SystemDeployment).SetDescription("root of the deployment tree").
			SetState(deployment.StateCOMMITTED).Save(ctx)
		return err
	})
	if err != nil {
		// Another server created it at the same moment.
		if d2, err2 := a.st.Client.Deployment.Query().Where(deployment.Name(SystemDeployment)).Only(ctx); err2 == nil {
			return d2, nil
		}
		return nil, err
	}
	return d, nil
}

// ensureIndexes adds the indexes the annealer's lookups need beyond those the ent schema declares:
// the edge table's primary key leads with the parent, so finding a node-role's parents would scan
// the table, and PostgreSQL does not index foreign keys (runs by node-role). They are plain
// CREATE INDEX IF NOT EXISTS, harmless to ent's migration (which never drops unknown indexes).
func (a *Annealer) ensureIndexes(ctx context.Context) error {
	for _, ddl := range []string{
		fmt.Sprintf("CREATE INDEX IF NOT EXISTS node_role_children_child ON %s (%s)", edgeTable, edgeChild),
		"CREATE INDEX IF NOT EXISTS runs_node_role ON runs (node_role_id)",
	} {
		if _, err := a.st.DB.ExecContext(ctx, ddl); err != nil {
			return fmt.Errorf("annealer index: %w", err)
		}
	}
	return nil
}

// analyze refreshes PostgreSQL's planner statistics after a bulk change. Right after thousands of
// bindings appear, autovacuum has not analysed them yet, and the planner, believing the tables
// nearly empty, picks nested-loop scans that make every claim cost O(node-roles).
func (a *Annealer) analyze(ctx context.Context) {
	if a.st.Dialect != dialect.Postgres {
		return
	}
	if _, err := a.st.DB.ExecContext(ctx, "ANALYZE node_roles, node_role_children, machines, deployments"); err != nil {
		a.log.Warn("annealer: analyze", "err", err)
	}
}

// CreateDeployment creates a PROPOSED deployment under parentID (0: under "system").
func (a *Annealer) CreateDeployment(ctx context.Context, name string, parentID int) (*ent.Deployment, error) {
	if parentID == 0 {
		sys, err := a.EnsureSystem(ctx)
		if err != nil {
			return nil, err
		}
		parentID = sys.ID
	}
	var d *ent.Deployment
	err := a.tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		if ok, err := tx.Deployment.Query().Where(deployment.ID(parentID)).Exist(ctx); err != nil {
			return err
		} else if !ok {
			return domain.Errorf("parentId", domain.NotFound, "no deployment %d", parentID)
		}
		if ok, err := tx.Deployment.Query().Where(deployment.Name(name)).Exist(ctx); err != nil {
			return err
		} else if ok {
			return domain.Errorf("name", domain.Duplicate, "a deployment named %q exists", name)
		}
		var err error
		d, err = tx.Deployment.Create().SetName(name).SetParentID(parentID).Save(ctx)
		return err
	})
	return d, err
}

// DeploymentState is a deployment's reported state.
type DeploymentState string

// The reported deployment states.
const (
	DeploymentProposed  DeploymentState = "proposed"
	DeploymentCommitted DeploymentState = "committed"
	DeploymentActive    DeploymentState = "active"
	DeploymentError     DeploymentState = "error"
)

// DeriveDeploymentState computes the reported state from the stored one and the count of its
// node-roles per state: error when any node-role is in ERROR (an operator must act, whatever else
// is going on), else proposed while PROPOSED, else active when it has node-roles and all are
// ACTIVE, else committed (annealing, or nothing bound yet).
func DeriveDeploymentState(stored deployment.State, counts map[nodestate.State]int) DeploymentState {
	total := 0
	for _, n := range counts {
		total += n
	}
	switch {
	case counts[nodestate.Error] > 0:
		return DeploymentError
	case stored == deployment.StatePROPOSED:
		return DeploymentProposed
	case total > 0 && counts[nodestate.Active] == total:
		return DeploymentActive
	}
	return DeploymentCommitted
}

// DeploymentState returns the reported state of a deployment (see DeriveDeploymentState).
func (a *Annealer) DeploymentState(ctx context.Context, id int) (DeploymentState, error) {
	d, err := a.st.Client.Deployment.Get(ctx, id)
	if ent.IsNotFound(err) {
		return "", domain.Errorf("id", domain.NotFound, "no deployment %d", id)
	} else if err != nil {
		return "", err
	}
	counts, err := stateCounts(ctx, a.st.Client.NodeRole.Query().Where(noderole.DeploymentID(id)))
	if err != nil {
		return "", err
	}
	return DeriveDeploymentState(d.State, counts), nil
}

func stateCounts(ctx context.Context, q *ent.NodeRoleQuery) (map[nodestate.State]int, error) {
	var rows []struct {
		State string `json:"state"`
		Count int    `json:"count"`
	}
	if err := q.GroupBy(noderole.FieldState).Aggregate(ent.Count()).Scan(ctx, &rows); err != nil {
		return nil, err
	}
	out := map[nodestate.State]int{}
	for _, r := range rows {
		out[nodestate.State(r.State)] = r.Count
	}
	return out, nil
}

// txChunk is the default bound on the node-roles one API transaction changes (Options.CommitChunk):
// a transaction that holds SQLite's writer lock (or the annealer lock) for seconds would stall the
// scheduler.
const txChunk = 5000

// CommitDeployment commits a deployment: it becomes COMMITTED and each of its PROPOSED node-roles
// commits its proposed data and moves to TODO (every parent ACTIVE) or BLOCKED. A large
// deployment is committed in transactions of txChunk node-roles; the scheduler may start on the
// first while later ones commit, and if the process dies half-way, committing again finishes the
// job (only PROPOSED node-roles are touched).
func (a *Annealer) CommitDeployment(ctx context.Context, id int) (*ent.Deployment, error) {
	var d *ent.Deployment
	committed := 0
	defer func() {
		if committed >= 1000 {
			a.analyze(ctx)
		}
	}()
	for {
		more := false
		err := a.tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
			var err error
			if d, err = tx.Deployment.Get(ctx, id); ent.IsNotFound(err) {
				return domain.Errorf("id", domain.NotFound, "no deployment %d", id)
			} else if err != nil {
				return err
			}
			if d.State != deployment.StateCOMMITTED {
				if d, err = tx.Deployment.UpdateOneID(id).SetState(deployment.StateCOMMITTED).Save(ctx); err != nil {
					return err
				}
			}
			ids, err := tx.NodeRole.Query().Where(noderole.DeploymentID(id), noderole.StateEQ(noderole.StatePROPOSED)).
				Order(ent.Asc(noderole.FieldCohort), ent.Asc(noderole.FieldID)).Limit(a.opts.CommitChunk + 1).IDs(ctx)
			if err != nil {
				return err
			}
			if len(ids) > a.opts.CommitChunk {
				ids, more = ids[:a.opts.CommitChunk], true
			}
			committed += len(ids)
			return commitNodeRoles(ctx, tx, ids)
		})
		if err != nil {
			return nil, err
		}
		a.Wake()
		if !more {
			return d, nil
		}
	}
}

// CommitNodeRole commits one PROPOSED node-role (its deployment keeps its state: the node-role
// runs once the deployment is committed too).
func (a *Annealer) CommitNodeRole(ctx context.Context, id int) (*ent.NodeRole, error) {
	var nr *ent.NodeRole
	err := a.tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		cur, err := getNodeRole(ctx, tx, id)
		if err != nil {
			return err
		}
		if cur.State != noderole.StatePROPOSED {
			_, err := transition(ctx, tx, map[int]nodestate.State{id: nodestate.State(cur.State)}, nodestate.Commit{}, false, nil)
			return err // always illegal: reported as such
		}
		if err := commitNodeRoles(ctx, tx, []int{id}); err != nil {
			return err
		}
		nr, err = tx.NodeRole.Get(ctx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	a.Wake()
	return nr, nil
}

// commitNodeRoles copies proposed data to committed data where they differ and applies Commit.
func commitNodeRoles(ctx context.Context, tx *ent.Tx, ids []int) error {
	if len(ids) == 0 {
		return nil
	}
	for start := 0; start < len(ids); start += chunk {
		nrs, err := tx.NodeRole.Query().Where(noderole.IDIn(ids[start:min(start+chunk, len(ids))]...)).
			Select(noderole.FieldID, noderole.FieldProposedData, noderole.FieldCommittedData).All(ctx)
		if err != nil {
			return err
		}
		for _, nr := range nrs {
			if len(nr.ProposedData) == 0 && len(nr.CommittedData) == 0 || reflect.DeepEqual(nr.ProposedData, nr.CommittedData) {
				continue
			}
			if err := tx.NodeRole.UpdateOneID(nr.ID).SetCommittedData(deepCopy(nr.ProposedData)).Exec(ctx); err != nil {
				return err
			}
		}
	}
	blocked, err := notAllParentsActive(ctx, tx, ids)
	if err != nil {
		return err
	}
	ready, waiting := map[int]nodestate.State{}, map[int]nodestate.State{}
	for _, id := range ids {
		if blocked[id] {
			waiting[id] = nodestate.Proposed
		} else {
			ready[id] = nodestate.Proposed
		}
	}
	clear := func(u *ent.NodeRoleUpdate) { u.SetAttempts(0).ClearNextAttemptAt().SetStatus("committed") }
	if _, err := transition(ctx, tx, ready, nodestate.Commit{ParentsActive: true}, false, clear); err != nil {
		return err
	}
	_, err = transition(ctx, tx, waiting, nodestate.Commit{ParentsActive: false}, false, clear)
	return err
}

// ProposeDeployment moves a deployment back to PROPOSED for editing: its node-roles return to
// PROPOSED and nothing of it runs until it is committed again. It is refused (ILLEGAL_TRANSITION)
// while any of its node-roles is in TRANSITION: wait for the runs to end.
func (a *Annealer) ProposeDeployment(ctx context.Context, id int) (*ent.Deployment, error) {
	var d *ent.Deployment
	err := a.tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		var err error
		if d, err = tx.Deployment.Get(ctx, id); ent.IsNotFound(err) {
			return domain.Errorf("id", domain.NotFound, "no deployment %d", id)
		} else if err != nil {
			return err
		}
		if d.Name == SystemDeployment {
			return domain.Errorf("id", domain.IllegalTransition, "the system deployment stays committed")
		}
		var rows []struct {
			ID    int    `json:"id"`
			State string `json:"state"`
		}
		if err := tx.NodeRole.Query().Where(noderole.DeploymentID(id)).Select(noderole.FieldID, noderole.FieldState).Scan(ctx, &rows); err != nil {
			return err
		}
		cur := map[int]nodestate.State{}
		for _, r := range rows {
			cur[r.ID] = nodestate.State(r.State)
		}
		if _, err := transition(ctx, tx, cur, nodestate.Propose{}, false, func(u *ent.NodeRoleUpdate) {
			u.ClearNextAttemptAt().SetStatus("proposed")
		}); err != nil {
			return err
		}
		d, err = tx.Deployment.UpdateOneID(id).SetState(deployment.StatePROPOSED).Save(ctx)
		return err
	})
	return d, err
}

// RetryNodeRole re-queues a node-role in ERROR (→ TODO, or BLOCKED when a parent is not ACTIVE)
// and resets its failure count, so the retry policy starts afresh.
func (a *Annealer) RetryNodeRole(ctx context.Context, id int) (*ent.NodeRole, error) {
	var nr *ent.NodeRole
	err := a.tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		cur, err := getNodeRole(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := retry(ctx, tx, map[int]nodestate.State{id: nodestate.State(cur.State)}, true, "retried by operator"); err != nil {
			return err
		}
		nr, err = tx.NodeRole.Get(ctx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	a.Wake()
	return nr, nil
}

// RetryAllFailed re-queues every node-role in ERROR, in one deployment when deploymentID is not
// nil, and returns how many.
func (a *Annealer) RetryAllFailed(ctx context.Context, deploymentID *int) (int, error) {
	n := 0
	for {
		got := 0
		err := a.tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
			q := tx.NodeRole.Query().Where(noderole.StateEQ(noderole.StateERROR))
			if deploymentID != nil {
				q = q.Where(noderole.DeploymentID(*deploymentID))
			}
			ids, err := q.Order(ent.Asc(noderole.FieldID)).Limit(a.opts.CommitChunk).IDs(ctx)
			if err != nil {
				return err
			}
			cur := map[int]nodestate.State{}
			for _, id := range ids {
				cur[id] = nodestate.Error
			}
			got = len(ids)
			return retry(ctx, tx, cur, true, "retried by operator")
		})
		if err != nil {
			return n, err
		}
		n += got
		if got > 0 {
			a.Wake()
		}
		if got < a.opts.CommitChunk {
			return n, nil
		}
	}
}

// retry applies Retry (ERROR → TODO); node-roles with a parent that is not ACTIVE then follow
// ParentFailed to BLOCKED, since they cannot run yet. manual resets the failure count.
func retry(ctx context.Context, tx *ent.Tx, cur map[int]nodestate.State, manual bool, status string) error {
	moved, err := transition(ctx, tx, cur, nodestate.Retry{}, false, func(u *ent.NodeRoleUpdate) {
		u.ClearNextAttemptAt().SetStatus(status)
		if manual {
			u.SetAttempts(0)
		}
	})
	if err != nil || len(moved) == 0 {
		return err
	}
	ids := make([]int, 0, len(moved))
	for id := range moved {
		ids = append(ids, id)
	}
	bad, err := notAllParentsActive(ctx, tx, ids)
	if err != nil || len(bad) == 0 {
		return err
	}
	wait := map[int]nodestate.State{}
	for id := range bad {
		wait[id] = nodestate.Todo
	}
	_, err = transition(ctx, tx, wait, nodestate.ParentFailed{}, false, nil)
	return err
}

// getNodeRole reads a node-role, reporting an unknown id as a NOT_FOUND domain error.
func getNodeRole(ctx context.Context, tx *ent.Tx, id int) (*ent.NodeRole, error) {
	nr, err := tx.NodeRole.Get(ctx, id)
	if ent.IsNotFound(err) {
		return nil, domain.Errorf("id", domain.NotFound, "no node-role %d", id)
	}
	return nr, err
}
