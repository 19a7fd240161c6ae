package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/deployment"
	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/ent/role"
	"github.com/prybar/prybar/internal/domain"
	"github.com/prybar/prybar/internal/jsonvalue"
	"github.com/prybar/prybar/scheduler/catalog"
	"github.com/prybar/prybar/scheduler/nodestate"
)

// AttrTarget says where SetAttribute writes: one node-role (NodeRoleID), or a role's data in a
// deployment (DeploymentID and Role), which every binding of that role in the deployment reads.
type AttrTarget struct {
	NodeRoleID   int
	DeploymentID int
	Role         string
}

// AttrChange reports what a SetAttribute re-annealed.
type AttrChange struct {
	// Reannealed node-roles went ACTIVE → TODO because a value they read changed.
	Reannealed []int
	// Blocked descendants of those went to BLOCKED until they are ACTIVE again.
	Blocked []int
}

// SetAttribute sets the attribute at path (a JSON pointer "/a/b", or "a.b") to value (nil removes
// it) on the target, after validating the layered result against the role's JSON schema (an
// INVALID domain error names the failing path).
//
// On a PROPOSED node-role the value goes to its proposed data and is committed with it; otherwise
// it is a committed change: a node-role in an ACTIVE state whose configuration at path actually
// changed is re-annealed (→ TODO) and its descendants are BLOCKED until it is ACTIVE again.
// Nothing else changes state: TODO, BLOCKED and ERROR node-roles read the new value when they run.
func (a *Annealer) SetAttribute(ctx context.Context, t AttrTarget, path string, value any) (AttrChange, error) {
	parts, err := parsePath(path)
	if err != nil {
		return AttrChange{}, err
	}
	if value != nil {
		v, err := jsonValue(value)
		if err != nil {
			return AttrChange{}, domain.Errorf("value", domain.Invalid, "%s: not representable as JSON: %v", path, err)
		}
		value = v
	}
	var res AttrChange
	err = a.tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		res = AttrChange{}
		_, byName, err := a.roles.get(ctx, tx.Client(), 0) // in the transaction: see BindRoles
		if err != nil {
			return err
		}
		var changed []int
		switch {
		case t.NodeRoleID != 0:
			changed, err = a.setNodeRoleAttr(ctx, tx, t.NodeRoleID, parts, path, value)
		case t.DeploymentID != 0 && t.Role != "":
			ri, ok := byName[t.Role]
			if !ok {
				return domain.Errorf("role", domain.NotFound, "no role named %q", t.Role)
			}
			changed, err = a.setDeploymentAttr(ctx, tx, t.DeploymentID, ri, parts, path, value)
		default:
			return domain.Errorf("target", domain.Invalid, "give a node-role id, or a deployment id and a role name")
		}
		if err != nil || len(changed) == 0 {
			return err
		}
		cur, err := statesOf(ctx, tx, changed)
		if err != nil {
			return err
		}
		moved, err := transition(ctx, tx, cur, nodestate.Reanneal{}, false, func(u *ent.NodeRoleUpdate) {
			u.SetAttempts(0).ClearNextAttemptAt().SetStatus("re-annealing: " + path + " changed")
		})
		if err != nil {
			return err
		}
		for id := range moved {
			res.Reannealed = append(res.Reannealed, id)
		}
		blocked, err := blockDescendants(ctx, tx, res.Reannealed, nodestate.DescendantReanneal{})
		if err != nil {
			return err
		}
		for id := range blocked {
			res.Blocked = append(res.Blocked, id)
		}
		return nil
	})
	if err != nil {
		return AttrChange{}, err
	}
	sortInts(res.Reannealed)
	sortInts(res.Blocked)
	if len(res.Reannealed) > 0 {
		a.Wake()
	}
	return res, nil
}

// setNodeRoleAttr writes the node-role layer and returns the node-role when it must re-anneal.
func (a *Annealer) setNodeRoleAttr(ctx context.Context, tx *ent.Tx, id int, parts []string, path string, value any) ([]int, error) {
	nr, err := tx.NodeRole.Query().Where(noderole.ID(id)).WithRole().WithDeployment().Only(ctx)
	if ent.IsNotFound(err) {
		return nil, domain.Errorf("nodeRoleId", domain.NotFound, "no node-role %d", id)
	} else if err != nil {
		return nil, err
	}
	ri, err := a.roleInfo(ctx, tx.Client(), nr.Edges.Role)
	if err != nil {
		return nil, err
	}
	depData := sub(nr.Edges.Deployment.RoleData, ri.Name)
	proposed := nr.State == noderole.StatePROPOSED
	own := nr.CommittedData
	if proposed {
		own = nr.ProposedData
	}
	if err := checkDeclared(ri, parts, path, value); err != nil {
		return nil, err
	}
	next := setPath(own, parts, value)
	if err := validateAttrs(ri, layer(ri.Defaults, depData, next), path); err != nil {
		return nil, err
	}
	u := tx.NodeRole.UpdateOneID(id).SetProposedData(next)
	if !proposed {
		u.SetCommittedData(next)
	}
	if err := u.Exec(ctx); err != nil {
		return nil, err
	}
	if proposed || nr.State != noderole.StateACTIVE || nr.Edges.Deployment.State != deployment.StateCOMMITTED {
		return nil, nil
	}
	before := layer(ri.Defaults, depData, nr.CommittedData, nr.SystemData)
	after := layer(ri.Defaults, depData, next, nr.SystemData)
	if sameAt(before, after, parts) {
		return nil, nil
	}
	return []int{id}, nil
}

// setDeploymentAttr writes the deployment-role layer and returns the ACTIVE bindings of the role
// in the deployment whose configuration at path changed (a node-role that overrides the value in
// its own data does not read the deployment's).
func (a *Annealer) setDeploymentAttr(ctx context.Context, tx *ent.Tx, depID int, ri *roleInfo, parts []string, path string, value any) ([]int, error) {
	dep, err := tx.Deployment.Get(ctx, depID)
	if ent.IsNotFound(err) {
		return nil, domain.Errorf("deploymentId", domain.NotFound, "no deployment %d", depID)
	} else if err != nil {
		return nil, err
	}
	if err := checkDeclared(ri, parts, path, value); err != nil {
		return nil, err
	}
	old := sub(dep.RoleData, ri.Name)
	next := setPath(old, parts, value)
	if err := validateAttrs(ri, layer(ri.Defaults, next), path); err != nil {
		return nil, err
	}
	rd := deepCopy(dep.RoleData)
	if rd == nil {
		rd = map[string]any{}
	}
	rd[ri.Name] = next
	if err := tx.Deployment.UpdateOneID(depID).SetRoleData(rd).Exec(ctx); err != nil {
		return nil, err
	}
	if dep.State != deployment.StateCOMMITTED {
		return nil, nil
	}
	nrs, err := tx.NodeRole.Query().Where(noderole.DeploymentID(depID), noderole.HasRoleWith(role.ID(ri.ID)),
		noderole.StateEQ(noderole.StateACTIVE)).All(ctx)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, nr := range nrs {
		before := layer(ri.Defaults, old, nr.CommittedData, nr.SystemData)
		after := layer(ri.Defaults, next, nr.CommittedData, nr.SystemData)
		if !sameAt(before, after, parts) {
			out = append(out, nr.ID)
		}
	}
	return out, nil
}

func (a *Annealer) roleInfo(ctx context.Context, client *ent.Client, r *ent.Role) (*roleInfo, error) {
	byID, _, err := a.roles.get(ctx, client, 0)
	if err != nil {
		return nil, err
	}
	if ri, ok := byID[r.ID]; ok && ri.UpdatedAt.Equal(r.UpdatedAt) {
		return ri, nil
	}
	a.roles.invalidate()
	byID, _, err = a.roles.get(ctx, client, 0)
	if err != nil {
		return nil, err
	}
	if ri, ok := byID[r.ID]; ok {
		return ri, nil
	}
	return &roleInfo{Role: r}, nil
}

// validateAttrs checks configuration attributes against the role's schema. The wall is left out:
// it is executor output, not configuration, and may hold keys the schema does not declare.
func validateAttrs(ri *roleInfo, attrs map[string]any, path string) error {
	if ri.compileErr != nil {
		return ri.compileErr
	}
	if ri.cat == nil {
		return nil
	}
	err := ri.cat.Validate(attrs)
	var ae *catalog.AttributeError
	if errors.As(err, &ae) {
		msgs := make([]string, len(ae.Problems))
		for i, p := range ae.Problems {
			msgs[i] = p.Path + ": " + p.Message
		}
		return domain.Errorf("value", domain.Invalid, "setting %s on role %q: %s", path, ri.Name, strings.Join(msgs, "; "))
	}
	return err
}

// parsePath accepts a JSON pointer ("/disk/size") or a dotted path ("disk.size").
func parsePath(path string) ([]string, error) {
	if path == "" || path == "/" {
		return nil, domain.Errorf("path", domain.Invalid, "path must name an attribute, e.g. /delay")
	}
	var parts []string
	if strings.HasPrefix(path, "/") {
		for _, p := range strings.Split(path[1:], "/") {
			parts = append(parts, strings.ReplaceAll(strings.ReplaceAll(p, "~1", "/"), "~0", "~"))
		}
	} else {
		parts = strings.Split(path, ".")
	}
	for _, p := range parts {
		if p == "" {
			return nil, domain.Errorf("path", domain.Invalid, "path %q has an empty segment", path)
		}
	}
	return parts, nil
}

// layer merges maps left to right (later wins; nested objects merge key by key) into a fresh map:
// role defaults ⊕ deployment-role data ⊕ node-role committed data ⊕ system data ⊕ wall.
func layer(maps ...map[string]any) map[string]any {
	out := map[string]any{}
	for _, m := range maps {
		mergeInto(out, m)
	}
	return out
}

func mergeInto(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				mergeInto(dm, sm)
				continue
			}
			dm := map[string]any{}
			mergeInto(dm, sm)
			dst[k] = dm
			continue
		}
		dst[k] = jsonvalue.Copy(v)
	}
}

func sub(m map[string]any, key string) map[string]any {
	v, _ := m[key].(map[string]any)
	return v
}

// LookupAttribute returns the value at an attribute path (JSON pointer such as "/boot/device", or
// dotted) in m; false when the path is malformed or nothing is set there. The API lists attribute
// values with it, so paths resolve exactly as the annealer resolves them.
func LookupAttribute(m map[string]any, path string) (any, bool) {
	parts, err := parsePath(path)
	if err != nil {
		return nil, false
	}
	return getPath(m, parts)
}

func getPath(m map[string]any, parts []string) (any, bool) {
	var cur any = m
	for _, p := range parts {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// setPath returns a copy of m with value at parts (nil deletes), creating objects on the way.
func setPath(m map[string]any, parts []string, value any) map[string]any {
	out := deepCopy(m)
	if out == nil {
		out = map[string]any{}
	}
	cur := out
	for _, p := range parts[:len(parts)-1] {
		next, ok := cur[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[p] = next
		}
		cur = next
	}
	last := parts[len(parts)-1]
	if value == nil {
		delete(cur, last)
	} else {
		cur[last] = value
	}
	return out
}

func sameAt(a, b map[string]any, parts []string) bool {
	va, oka := getPath(a, parts)
	vb, okb := getPath(b, parts)
	return oka == okb && reflect.DeepEqual(va, vb)
}

func deepCopy(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	return jsonvalue.Copy(m).(map[string]any)
}

// jsonValue normalises a Go value to its JSON shape (float64 numbers, map[string]any …), the shape
// stored data has after a round trip, so comparisons and validation see one representation.
func jsonValue(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	err = json.Unmarshal(b, &out)
	return out, err
}

func jsonRoundTrip(v any) any {
	out, err := jsonValue(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return out
}

// injected collects the attributes a node-role wants from its ancestors: for each want, the
// nearest ancestor (breadth-first, parents first) of the named role, or any role when none is
// named, whose layered attributes hold the path.
func (a *Annealer) injected(ctx context.Context, tx *ent.Tx, nrID int, wants []catalog.Want, byID map[int]*roleInfo) (map[string]any, error) {
	out := map[string]any{}
	if len(wants) == 0 {
		return out, nil
	}
	var levels [][]*ent.NodeRole
	frontier := []int{nrID}
	seen := map[int]bool{nrID: true}
	for len(frontier) > 0 && len(levels) < 64 {
		ps, err := tx.NodeRole.Query().Where(noderole.HasChildrenWith(noderole.IDIn(frontier...))).
			WithDeployment().Order(ent.Asc(noderole.FieldID)).All(ctx)
		if err != nil {
			return nil, err
		}
		var lvl []*ent.NodeRole
		frontier = nil
		for _, p := range ps {
			if !seen[p.ID] {
				seen[p.ID] = true
				lvl = append(lvl, p)
				frontier = append(frontier, p.ID)
			}
		}
		if len(lvl) > 0 {
			levels = append(levels, lvl)
		}
	}
	for _, w := range wants {
		parts, err := parsePath(w.Path)
		if err != nil {
			continue
		}
	search:
		for _, lvl := range levels {
			for _, p := range lvl {
				ri := byID[p.RoleID]
				if ri == nil || (w.Role != "" && ri.Name != w.Role) {
					continue
				}
				attrs := layer(ri.Defaults, sub(p.Edges.Deployment.RoleData, ri.Name), p.CommittedData, p.SystemData, p.Wall)
				if v, ok := getPath(attrs, parts); ok {
					out[w.String()] = v
					break search
				}
			}
		}
	}
	return out, nil
}

func sortInts(s []int) { slices.Sort(s) }
