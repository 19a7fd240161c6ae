package graph

import (
	"context"

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
		if v, ok := scheduler.LookupAttribute(data, pointer); ok {
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
		if v, ok := scheduler.LookupAttribute(rd, pointer); ok {
			out = append(out, &model.AttributeValue{Layer: "DEPLOYMENT", Deployment: d, Proposed: false, Value: v})
		}
	}
	return out, nil
}
