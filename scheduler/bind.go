package scheduler

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/deployment"
	"github.com/prybar/prybar/ent/machine"
	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/ent/run"
	"github.com/prybar/prybar/internal/domain"
)

// BindRole binds roleName to a machine in a deployment (see BindRoles) and returns the binding.
func (a *Annealer) BindRole(ctx context.Context, machineID int, roleName string, deploymentID int) (*ent.NodeRole, error) {
	nrs, err := a.BindRoles(ctx, []int{machineID}, roleName, deploymentID)
	if err != nil {
		return nil, err
	}
	return nrs[0], nil
}

// BindRoles binds roleName to each machine in one transaction and returns the bindings in the
// order of machineIDs. A binding that already exists is returned as it is.
//
// New bindings start PROPOSED, with the parents their role requires, created as needed:
//   - an implicit requirement is satisfied on the same machine: its binding in this deployment
//     or the nearest parent deployment, else a new binding in this deployment;
//   - any other requirement by a binding of that role in the deployment chain (this deployment,
//     then its parents, nearest first): the one on the same machine when there is one, else the
//     oldest; a cluster role makes every binding of it in that deployment a parent. With none
//     anywhere, the role is bound on the same machine in this deployment.
//
// A new binding's cohort is 1 + the largest cohort of its parents (0 without parents).
// Conflicts are refused with CONFLICT naming both roles: a role whose conflicts name a role or
// capability already bound on the machine (or the other way round), and a capability provided
// twice on one machine.
func (a *Annealer) BindRoles(ctx context.Context, machineIDs []int, roleName string, deploymentID int) ([]*ent.NodeRole, error) {
	var out []*ent.NodeRole
	err := a.tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		// Through the transaction: on SQLite a query on another connection while this
		// transaction holds the write lock waits for a free connection, and with every
		// connection of the pool queued on that lock it never gets one (a deadlock until the busy
		// timeout, seen with eight concurrent bindRole requests).
		_, byName, err := a.roles.get(ctx, tx.Client(), 0)
		if err != nil {
			return err
		}
		ri, ok := byName[roleName]
		if !ok {
			a.roles.invalidate()
			if _, byName, err = a.roles.get(ctx, tx.Client(), 0); err != nil {
				return err
			}
			if ri, ok = byName[roleName]; !ok {
				return domain.Errorf("role", domain.NotFound, "no role named %q", roleName)
			}
		}
		b, err := newBinder(ctx, tx, byName, deploymentID, machineIDs)
		if err != nil {
			return err
		}
		tops := make([]*binding, len(machineIDs))
		for i, m := range machineIDs {
			if tops[i], err = b.bind(m, ri); err != nil {
				return err
			}
		}
		if err := b.create(ctx); err != nil {
			return err
		}
		ids := make([]int, len(tops))
		for i, t := range tops {
			ids[i] = t.id
		}
		byID := map[int]*ent.NodeRole{}
		for start := 0; start < len(ids); start += chunk {
			nrs, err := tx.NodeRole.Query().Where(noderole.IDIn(ids[start:min(start+chunk, len(ids))]...)).All(ctx)
			if err != nil {
				return err
			}
			for _, nr := range nrs {
				byID[nr.ID] = nr
			}
		}
		out = make([]*ent.NodeRole, len(ids))
		for i, id := range ids {
			out[i] = byID[id]
		}
		return nil
	})
	return out, err
}

// binding is an existing or planned node-role while binding.
type binding struct {
	id                   int // 0 while planned
	machine, role, dep   int
	cohort               int
	parents              []*binding
	planned, clusterPeer bool
}

type binder struct {
	tx        *ent.Tx
	ctx       context.Context
	byName    map[string]*roleInfo
	byID      map[int]*roleInfo
	dep       int
	chain     []int              // this deployment, then its ancestors
	onMachine map[int][]*binding // every binding on the machines involved, any deployment
	first     map[[2]int]*binding
	all       map[[2]int][]*binding
	planned   []*binding
	names     map[int]string // machine names for messages
}

func newBinder(ctx context.Context, tx *ent.Tx, byName map[string]*roleInfo, depID int, machineIDs []int) (*binder, error) {
	b := &binder{tx: tx, ctx: ctx, byName: byName, byID: map[int]*roleInfo{}, dep: depID,
		onMachine: map[int][]*binding{}, first: map[[2]int]*binding{}, all: map[[2]int][]*binding{}, names: map[int]string{}}
	for _, ri := range byName {
		b.byID[ri.ID] = ri
	}
	// The deployment chain, nearest first.
	for id, hops := depID, 0; id != 0 && hops < 64; hops++ {
		d, err := tx.Deployment.Query().Where(deployment.ID(id)).Select(deployment.FieldID, deployment.FieldParentID).Only(ctx)
		if ent.IsNotFound(err) {
			return nil, domain.Errorf("deploymentId", domain.NotFound, "no deployment %d", id)
		} else if err != nil {
			return nil, err
		}
		b.chain = append(b.chain, d.ID)
		if d.ParentID == nil {
			break
		}
		id = *d.ParentID
	}
	uniq := slices.Compact(slices.Sorted(slices.Values(machineIDs)))
	for start := 0; start < len(uniq); start += chunk {
		part := uniq[start:min(start+chunk, len(uniq))]
		var ms []struct {
			ID   int    `json:"id"`
			Name string `json:"name"`
		}
		if err := tx.Machine.Query().Where(machine.IDIn(part...)).Select(machine.FieldID, machine.FieldName).Scan(ctx, &ms); err != nil {
			return nil, err
		}
		for _, m := range ms {
			b.names[m.ID] = m.Name
		}
		nrs, err := tx.NodeRole.Query().Where(noderole.MachineIDIn(part...)).
			Select(noderole.FieldID, noderole.FieldMachineID, noderole.FieldRoleID, noderole.FieldDeploymentID, noderole.FieldCohort).
			Order(ent.Asc(noderole.FieldID)).All(ctx)
		if err != nil {
			return nil, err
		}
		for _, nr := range nrs {
			b.onMachine[nr.MachineID] = append(b.onMachine[nr.MachineID],
				&binding{id: nr.ID, machine: nr.MachineID, role: nr.RoleID, dep: nr.DeploymentID, cohort: nr.Cohort})
		}
	}
	for _, m := range uniq {
		if _, ok := b.names[m]; !ok {
			return nil, domain.Errorf("machineId", domain.NotFound, "no machine %d", m)
		}
	}
	return b, nil
}

func (b *binder) onMachineIn(m, role, dep int) *binding {
	for _, x := range b.onMachine[m] {
		if x.role == role && x.dep == dep {
			return x
		}
	}
	return nil
}

// peers returns the bindings of role in dep: all of them, or (all=false) just the oldest.
func (b *binder) peers(role, dep int, all bool) ([]*binding, error) {
	k := [2]int{role, dep}
	if !all {
		if f, ok := b.first[k]; ok {
			if f == nil {
				return nil, nil
			}
			return []*binding{f}, nil
		}
		nr, err := b.tx.NodeRole.Query().Where(noderole.RoleID(role), noderole.DeploymentID(dep)).
			Select(noderole.FieldID, noderole.FieldMachineID, noderole.FieldCohort).Order(ent.Asc(noderole.FieldID)).First(b.ctx)
		if err != nil && !ent.IsNotFound(err) {
			return nil, err
		}
		var f *binding
		if nr != nil {
			f = &binding{id: nr.ID, machine: nr.MachineID, role: role, dep: dep, cohort: nr.Cohort}
		} else {
			for _, p := range b.planned {
				if p.role == role && p.dep == dep {
					f = p
					break
				}
			}
		}
		b.first[k] = f
		if f == nil {
			return nil, nil
		}
		return []*binding{f}, nil
	}
	if ps, ok := b.all[k]; ok {
		return ps, nil
	}
	nrs, err := b.tx.NodeRole.Query().Where(noderole.RoleID(role), noderole.DeploymentID(dep)).
		Select(noderole.FieldID, noderole.FieldMachineID, noderole.FieldCohort).Order(ent.Asc(noderole.FieldID)).All(b.ctx)
	if err != nil {
		return nil, err
	}
	var ps []*binding
	for _, nr := range nrs {
		ps = append(ps, &binding{id: nr.ID, machine: nr.MachineID, role: role, dep: dep, cohort: nr.Cohort})
	}
	for _, p := range b.planned {
		if p.role == role && p.dep == dep {
			ps = append(ps, p)
		}
	}
	b.all[k] = ps
	return ps, nil
}

// bind returns the binding of ri on machine m in the binder's deployment, planning it (and its
// missing ancestry) when it does not exist.
func (b *binder) bind(m int, ri *roleInfo) (*binding, error) {
	if x := b.onMachineIn(m, ri.ID, b.dep); x != nil {
		return x, nil
	}
	var parents []*binding
	for _, req := range ri.Requires {
		rq, ok := b.byName[req]
		if !ok {
			return nil, domain.Errorf("role", domain.NotFound, "role %q requires %q, which is not loaded", ri.Name, req)
		}
		var found []*binding
		for _, d := range b.chain {
			if x := b.onMachineIn(m, rq.ID, d); x != nil && !rq.Cluster {
				found = []*binding{x}
				break
			}
			if rq.Implicit {
				continue // implicit requirements are satisfied on the same machine only
			}
			ps, err := b.peers(rq.ID, d, rq.Cluster)
			if err != nil {
				return nil, err
			}
			if len(ps) > 0 {
				found = ps
				break
			}
		}
		if len(found) == 0 {
			p, err := b.bind(m, rq)
			if err != nil {
				return nil, err
			}
			found = []*binding{p}
			if rq.Cluster {
				if found, err = b.peers(rq.ID, b.dep, true); err != nil {
					return nil, err
				}
			}
		}
		for _, f := range found {
			if !slices.Contains(parents, f) {
				parents = append(parents, f)
			}
		}
	}
	if err := b.checkConflicts(m, ri); err != nil {
		return nil, err
	}
	nb := &binding{machine: m, role: ri.ID, dep: b.dep, parents: parents, planned: true, clusterPeer: ri.Cluster}
	for _, p := range parents {
		nb.cohort = max(nb.cohort, p.cohort+1)
	}
	b.planned = append(b.planned, nb)
	b.onMachine[m] = append(b.onMachine[m], nb)
	k := [2]int{ri.ID, b.dep}
	if ps, ok := b.all[k]; ok {
		b.all[k] = append(ps, nb)
	}
	if f, ok := b.first[k]; ok && f == nil {
		b.first[k] = nb
	}
	return nb, nil
}

func (b *binder) checkConflicts(m int, ri *roleInfo) error {
	for _, x := range b.onMachine[m] {
		xr := b.byID[x.role]
		if xr == nil || xr.ID == ri.ID {
			continue
		}
		what := func(r *roleInfo, names []string) string {
			for _, n := range names {
				if n == r.Name {
					return fmt.Sprintf("role %q", n)
				}
				if slices.Contains(r.Provides, n) {
					return fmt.Sprintf("capability %q (provided by role %q)", n, r.Name)
				}
			}
			return ""
		}
		where := fmt.Sprintf("on machine %s (node-role %s)", b.names[m], idText(x))
		if w := what(xr, ri.Conflicts); w != "" {
			return domain.Errorf("role", domain.Conflict, "role %q conflicts with %s already bound %s", ri.Name, w, where)
		}
		if w := what(ri, xr.Conflicts); w != "" {
			return domain.Errorf("role", domain.Conflict, "role %q, already bound %s, conflicts with %s", xr.Name, where, w)
		}
		for _, c := range ri.Provides {
			if slices.Contains(xr.Provides, c) {
				return domain.Errorf("role", domain.Conflict, "role %q provides %q, which role %q already provides %s",
					ri.Name, c, xr.Name, where)
			}
		}
	}
	return nil
}

func idText(x *binding) string {
	if x.id == 0 {
		return "new"
	}
	return fmt.Sprint(x.id)
}

// create inserts the planned bindings cohort by cohort (parents first, so their ids exist) with
// their parent edges, then gives every dependent of a cluster role all of that role's peers.
func (b *binder) create(ctx context.Context) error {
	sort.SliceStable(b.planned, func(i, j int) bool { return b.planned[i].cohort < b.planned[j].cohort })
	clusters := map[[2]int]bool{}
	for start := 0; start < len(b.planned); {
		end := start
		for end < len(b.planned) && b.planned[end].cohort == b.planned[start].cohort && end-start < 500 {
			end++
		}
		part := b.planned[start:end]
		builders := make([]*ent.NodeRoleCreate, len(part))
		for i, p := range part {
			c := b.tx.NodeRole.Create().SetMachineID(p.machine).SetRoleID(p.role).SetDeploymentID(p.dep).SetCohort(p.cohort)
			for _, par := range p.parents {
				c.AddParentIDs(par.id)
			}
			builders[i] = c
			if p.clusterPeer {
				clusters[[2]int{p.role, p.dep}] = true
			}
		}
		nrs, err := b.tx.NodeRole.CreateBulk(builders...).Save(ctx)
		if err != nil {
			return err
		}
		for i, nr := range nrs {
			part[i].id = nr.ID
		}
		start = end
	}
	for k := range clusters {
		peers, err := b.tx.NodeRole.Query().Where(noderole.RoleID(k[0]), noderole.DeploymentID(k[1])).IDs(ctx)
		if err != nil {
			return err
		}
		deps, err := b.tx.NodeRole.Query().
			Where(noderole.HasParentsWith(noderole.RoleID(k[0]), noderole.DeploymentID(k[1]))).
			WithParents(func(q *ent.NodeRoleQuery) {
				q.Where(noderole.RoleID(k[0]), noderole.DeploymentID(k[1])).Select(noderole.FieldID)
			}).All(ctx)
		if err != nil {
			return err
		}
		for _, d := range deps {
			var missing []int
			for _, p := range peers {
				if !slices.ContainsFunc(d.Edges.Parents, func(x *ent.NodeRole) bool { return x.ID == p }) {
					missing = append(missing, p)
				}
			}
			if len(missing) > 0 {
				if err := b.tx.NodeRole.UpdateOneID(d.ID).AddParentIDs(missing...).Exec(ctx); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// UnbindRole removes a binding together with its descendants, which must all be PROPOSED (so
// nothing committed loses a requirement); a binding in TRANSITION cannot be removed. It returns
// the ids removed.
func (a *Annealer) UnbindRole(ctx context.Context, nodeRoleID int) ([]int, error) {
	var removed []int
	err := a.tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		nr, err := tx.NodeRole.Get(ctx, nodeRoleID)
		if ent.IsNotFound(err) {
			return domain.Errorf("id", domain.NotFound, "no node-role %d", nodeRoleID)
		} else if err != nil {
			return err
		}
		if nr.State == noderole.StateTRANSITION {
			return domain.Errorf("id", domain.IllegalTransition, "node-role %d is running; unbind it when the run ends", nodeRoleID)
		}
		desc, err := descendants(ctx, tx, []int{nodeRoleID})
		if err != nil {
			return err
		}
		var busy []string
		for id, s := range desc {
			if s != "PROPOSED" {
				busy = append(busy, fmt.Sprintf("%d (%s)", id, s))
			}
		}
		if len(busy) > 0 {
			sort.Strings(busy)
			return domain.Errorf("id", domain.Conflict, "node-role %d has dependents that are not PROPOSED: %s; propose or unbind them first",
				nodeRoleID, strings.Join(busy, ", "))
		}
		removed = append(removed, nodeRoleID)
		for id := range desc {
			removed = append(removed, id)
		}
		slices.Sort(removed)
		if _, err := tx.Run.Delete().Where(run.NodeRoleIDIn(removed...)).Exec(ctx); err != nil {
			return err
		}
		_, err = tx.NodeRole.Delete().Where(noderole.IDIn(removed...)).Exec(ctx)
		return err
	})
	return removed, err
}
