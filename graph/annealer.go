package graph

import (
	"context"
	"strings"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/deployment"
	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/graph/model"
	"github.com/prybar/prybar/internal/domain"
	"github.com/prybar/prybar/scheduler"
	"github.com/prybar/prybar/scheduler/nodestate"
)

// annealerFor returns the annealer, or a domain error when this server runs without one.
func (r *Resolver) annealerFor() (*scheduler.Annealer, []*domain.Error) {
	if r.annealer == nil {
		return nil, []*domain.Error{domain.Errorf("", domain.Unavailable, "the annealer is not running in this server")}
	}
	return r.annealer, nil
}

// deploymentStatus derives a deployment's reported state from its node-roles.
func (r *Resolver) deploymentStatus(ctx context.Context, d *ent.Deployment) (model.DeploymentStatus, error) {
	var rows []struct {
		State string `json:"state"`
		Count int    `json:"count"`
	}
	err := r.client.NodeRole.Query().Where(noderole.DeploymentID(d.ID)).
		GroupBy(noderole.FieldState).Aggregate(ent.Count()).Scan(ctx, &rows)
	if err != nil {
		return "", err
	}
	counts := map[nodestate.State]int{}
	for _, row := range rows {
		counts[nodestate.State(row.State)] = row.Count
	}
	return model.DeploymentStatus(strings.ToUpper(string(scheduler.DeriveDeploymentState(d.State, counts)))), nil
}

// deploymentOrSystem resolves an optional deployment id, defaulting to the "system" root.
func (r *Resolver) deploymentOrSystem(ctx context.Context, id *int) (int, []*domain.Error, error) {
	if id != nil {
		return *id, nil, nil
	}
	sys, err := r.client.Deployment.Query().Where(deployment.Name("system")).Only(ctx)
	if ent.IsNotFound(err) {
		return 0, []*domain.Error{domain.Errorf("deploymentID", domain.NotFound, "no system deployment yet (is the annealer running?)")}, nil
	}
	if err != nil {
		return 0, nil, err
	}
	return sys.ID, nil, nil
}

// payloadErrors splits err into payload errors (domain) and an internal error.
func payloadErrors(err error) ([]*domain.Error, error) {
	if err == nil {
		return []*domain.Error{}, nil
	}
	if de, ok := domain.As(err); ok {
		return []*domain.Error{de}, nil
	}
	return nil, err
}

// detach makes an entity returned from a finished transaction usable by nested resolvers.
func detach[T interface{ Unwrap() T }](v T, errs []*domain.Error) (out T) {
	defer func() {
		// Unwrap panics on an entity that was not read in a transaction: it is usable as is.
		if recover() != nil {
			out = v
		}
	}()
	if len(errs) > 0 {
		var zero T
		return zero
	}
	return v.Unwrap()
}

func unwrapNR(nr *ent.NodeRole, errs []*domain.Error) *ent.NodeRole {
	if nr == nil {
		return nil
	}
	return detach(nr, errs)
}

func nodeRolePayload(nr *ent.NodeRole, err error) (*model.NodeRolePayload, error) {
	errs, err := payloadErrors(err)
	return &model.NodeRolePayload{NodeRole: unwrapNR(nr, errs), Errors: errs}, err
}

func deploymentPayload(d *ent.Deployment, err error) (*model.DeploymentPayload, error) {
	errs, err := payloadErrors(err)
	if d != nil {
		d = detach(d, errs)
	}
	return &model.DeploymentPayload{Deployment: d, Errors: errs}, err
}
