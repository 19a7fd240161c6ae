package graph

import (
	"context"
	"strings"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/ent/role"
	"github.com/prybar/prybar/graph/model"
	"github.com/prybar/prybar/scheduler"
)

// maxAttributeValues bounds Attribute.values: the list is for looking, not for bulk export.
const maxAttributeValues = 1000

// attributeValues lists where the attribute a is set: node-roles of its role holding a value at
// its path (committed data, or proposed data while PROPOSED), then deployments whose data for
// the role holds one. Defaults are the attribute's own default field.
func (r *Resolver) attributeValues(ctx context.Context, a *ent.Attribute, first int) ([]*model.AttributeValue, error) {
	if first <= 0 || first > maxAttributeValues {
		first = maxAttributeValues
	}
	roleName, pointer := scheduler.SplitAttributeName(a.Name)
	parts := pointerParts(pointer)
	out := []*model.AttributeValue{}
	nrs, err := r.client.NodeRole.Query().Where(noderole.HasRoleWith(role.Name(roleName))).
		WithDeployment().Order(ent.Asc(noderole.FieldID)).All(ctx)
	if err != nil {
		return nil, err
	}
	for _, nr := range nrs {
		if len(out) >= first {
			return out, nil
		}
		proposed := nr.State == noderole.StatePROPOSED
		data := nr.CommittedData
		if proposed {
			data = nr.ProposedData
		}
		if v, ok := lookup(data, parts); ok {
			out = append(out, &model.AttributeValue{Layer: "NODEROLE", NodeRole: nr, Deployment: nr.Edges.Deployment, Proposed: proposed, Value: v})
		}
	}
	deps, err := r.client.Deployment.Query().Order(ent.Asc("id")).All(ctx)
	if err != nil {
		return nil, err
	}
	for _, d := range deps {
		if len(out) >= first {
			break
		}
		rd, _ := d.RoleData[roleName].(map[string]any)
		if v, ok := lookup(rd, parts); ok {
			out = append(out, &model.AttributeValue{Layer: "DEPLOYMENT", Deployment: d, Proposed: false, Value: v})
		}
	}
	return out, nil
}

func pointerParts(p string) []string {
	if p == "" || p == "/" {
		return nil
	}
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, s := range parts {
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
	}
	return parts
}

func lookup(m map[string]any, parts []string) (any, bool) {
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
	return cur, len(parts) > 0
}
