package inventory

import (
	"context"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/deployment"
	"github.com/prybar/prybar/ent/machine"
	"github.com/prybar/prybar/ent/network"
	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/ent/rack"
	"github.com/prybar/prybar/ent/role"
	"github.com/prybar/prybar/ent/site"
	"github.com/prybar/prybar/internal/domain"
)

// refs maps each reference field to an existence check, so that an unknown id is reported as a
// domain error naming the field rather than as an anonymous foreign-key failure.
var refs = map[string]struct {
	what   string
	exists func(ctx context.Context, c *ent.Client, id int) (bool, error)
}{
	"site_id": {"site", func(ctx context.Context, c *ent.Client, id int) (bool, error) {
		return c.Site.Query().Where(site.ID(id)).Exist(ctx)
	}},
	"rack_id": {"rack", func(ctx context.Context, c *ent.Client, id int) (bool, error) {
		return c.Rack.Query().Where(rack.ID(id)).Exist(ctx)
	}},
	"machine_id": {"machine", func(ctx context.Context, c *ent.Client, id int) (bool, error) {
		return c.Machine.Query().Where(machine.ID(id)).Exist(ctx)
	}},
	"network_id": {"network", func(ctx context.Context, c *ent.Client, id int) (bool, error) {
		return c.Network.Query().Where(network.ID(id)).Exist(ctx)
	}},
	"role_id": {"role", func(ctx context.Context, c *ent.Client, id int) (bool, error) {
		return c.Role.Query().Where(role.ID(id)).Exist(ctx)
	}},
	"deployment_id": {"deployment", func(ctx context.Context, c *ent.Client, id int) (bool, error) {
		return c.Deployment.Query().Where(deployment.ID(id)).Exist(ctx)
	}},
	"parent_id": {"deployment", func(ctx context.Context, c *ent.Client, id int) (bool, error) {
		return c.Deployment.Query().Where(deployment.ID(id)).Exist(ctx)
	}},
	"node_role_id": {"node-role", func(ctx context.Context, c *ent.Client, id int) (bool, error) {
		return c.NodeRole.Query().Where(noderole.ID(id)).Exist(ctx)
	}},
}

type clientMutation interface {
	ent.Mutation
	Client() *ent.Client
}

// refHook checks every reference a create or update sets.
func refHook(next ent.Mutator) ent.Mutator {
	return ent.MutateFunc(func(ctx context.Context, m ent.Mutation) (ent.Value, error) {
		cm, ok := m.(clientMutation)
		if !ok || m.Op().Is(ent.OpDelete|ent.OpDeleteOne) {
			return next.Mutate(ctx, m)
		}
		for _, f := range m.Fields() {
			ref, ok := refs[f]
			if !ok || (m.Type() == "Event") {
				continue
			}
			v, _ := m.Field(f)
			id, ok := v.(int)
			if !ok {
				continue
			}
			exists, err := ref.exists(ctx, cm.Client(), id)
			if err != nil {
				return nil, err
			}
			if !exists {
				return nil, domain.Errorf(domain.GraphQLName(f), domain.NotFound, "%s %d does not exist", ref.what, id)
			}
		}
		return next.Mutate(ctx, m)
	})
}
