package graph_test

import (
	"context"
	"testing"

	"github.com/prybar/prybar/graph"
	"github.com/prybar/prybar/internal/apitest"
	"github.com/prybar/prybar/scheduler"
	"github.com/prybar/prybar/scheduler/catalog"
	"github.com/prybar/prybar/scheduler/executor"
)

// Issue 7 point 13: the annealer's domain errors name the GraphQL argument as it is spelt in the
// schema ("machineID", never "machineId").
func TestAnnealerErrorsNameArguments(t *testing.T) {
	st := apitest.Open(t, apitest.DSN(t, apitest.SQLite))
	fleet(t, st, 1)
	ctx := context.Background()
	a := scheduler.New(st, executor.NewRegistry(executor.Noop{}), scheduler.Options{Log: apitest.Quiet()})
	if _, err := a.LoadRoles(ctx, catalog.Builtin()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.EnsureSystem(ctx); err != nil {
		t.Fatal(err)
	}
	srv := apitest.ServeWith(t, st, graph.Options{Annealer: a})
	expectRefused(t, srv, st, []refusal{
		{"bindRole unknown machine", `mutation { bindRole(machineID: 987654321, role: "ready") { errors { field code message } } }`, nil, "machineID", "NOT_FOUND"},
		{"createDeployment unknown parent", `mutation { createDeployment(name: "d-x", parentID: 987654321) { errors { field code message } } }`, nil, "parentID", "NOT_FOUND"},
	})
}
