package graph_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/graph"
	"github.com/prybar/prybar/internal/apitest"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/scheduler"
	"github.com/prybar/prybar/scheduler/catalog"
	"github.com/prybar/prybar/scheduler/executor"
)

// The annealer through the API: bind a leaf role (its ancestry appears), commit the system
// deployment, follow every state change on the subscription until all are ACTIVE; domain errors
// for bad input.
func TestAnnealerOverGraphQL(t *testing.T) {
	apitest.ForEachDB(t, func(t *testing.T, b apitest.Backend) {
		st := apitest.Open(t, apitest.DSN(t, b))
		fleet(t, st, 2)
		ctx := events.WithActor(context.Background(), "test")
		if err := st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
			return tx.Machine.Update().SetAlive(true).Exec(ctx)
		}); err != nil {
			t.Fatal(err)
		}
		a := scheduler.New(st, executor.NewRegistry(executor.Noop{}, &executor.Test{}), scheduler.Options{Log: apitest.Quiet(), Sweep: 200 * time.Millisecond})
		if _, err := a.LoadRoles(ctx, catalog.Builtin()); err != nil {
			t.Fatal(err)
		}
		sys, err := a.EnsureSystem(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.Stop)
		srv := apitest.ServeWith(t, st, graph.Options{Annealer: a})
		from, _ := events.LastSeq(ctx, st.Client)
		sub, err := apitest.Subscribe(ctx, srv.URL, `subscription($after: Int) { events(after: $after, filter: {kinds: ["noderole.state"]}) { seq objectID changes } }`,
			map[string]any{"after": from})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()

		m := st.Client.Machine.Query().FirstX(ctx)
		var bound struct {
			BindRole struct {
				NodeRole struct {
					ID, State string
					Role      struct{ Name string }
				}
				Errors []domainErr
			}
		}
		srv.Query(t, `mutation($m: ID!) { bindRole(machineID: $m, role: "ready") { nodeRole { id state role { name } } errors { field code message } } }`,
			map[string]any{"m": m.ID}, &bound)
		if len(bound.BindRole.Errors) > 0 || bound.BindRole.NodeRole.State != "PROPOSED" || bound.BindRole.NodeRole.Role.Name != "ready" {
			t.Fatalf("bindRole = %+v", bound.BindRole)
		}
		var list struct {
			NodeRoles struct {
				TotalCount int
				Edges      []struct {
					Node struct {
						ID, State string
						Cohort    int
						Role      struct{ Name string }
					}
				}
			}
		}
		q := `query($m: ID!) { nodeRoles(where: {hasMachineWith: {id: $m}}, orderBy: {field: COHORT}) { totalCount edges { node { id state cohort role { name } } } } }`
		srv.Query(t, q, map[string]any{"m": m.ID}, &list)
		if list.NodeRoles.TotalCount != 4 {
			t.Fatalf("binding ready created %d node-roles, want the chain of 4", list.NodeRoles.TotalCount)
		}
		var badRole struct{ BindRole struct{ Errors []domainErr } }
		srv.Query(t, `mutation($m: ID!) { bindRole(machineID: $m, role: "no-such-role") { errors { field code message } } }`, map[string]any{"m": m.ID}, &badRole)
		if len(badRole.BindRole.Errors) != 1 || badRole.BindRole.Errors[0].Code != "NOT_FOUND" {
			t.Fatalf("unknown role: %+v", badRole)
		}
		var netID string
		for _, e := range list.NodeRoles.Edges {
			if e.Node.Role.Name == "network" {
				netID = e.Node.ID
			}
		}
		var badAttr struct {
			SetAttribute struct{ Errors []domainErr }
		}
		srv.Query(t, `mutation($id: ID!) { setAttribute(nodeRoleID: $id, path: "/mtu", value: "jumbo") { reannealed errors { field code message } } }`,
			map[string]any{"id": netID}, &badAttr)
		if len(badAttr.SetAttribute.Errors) != 1 || badAttr.SetAttribute.Errors[0].Code != "INVALID" {
			t.Fatalf("invalid attribute: %+v", badAttr)
		}

		var commit struct {
			CommitDeployment struct {
				Deployment struct{ Status string }
				Errors     []domainErr
			}
		}
		srv.Query(t, `mutation($id: ID!) { commitDeployment(id: $id) { deployment { status } errors { field code message } } }`,
			map[string]any{"id": sys.ID}, &commit)
		if len(commit.CommitDeployment.Errors) > 0 {
			t.Fatalf("commit: %+v", commit.CommitDeployment.Errors)
		}
		active := map[string]bool{}
		deadline := time.Now().Add(30 * time.Second)
		for len(active) < 4 && time.Now().Before(deadline) {
			data, ok := <-sub.Next
			if !ok {
				t.Fatalf("subscription ended: %v", sub.Err())
			}
			var ev struct {
				Events struct {
					ObjectID string
					Changes  map[string]any
				}
			}
			if err := json.Unmarshal(data, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Events.Changes["state"] == "ACTIVE" {
				active[ev.Events.ObjectID] = true
			}
		}
		if len(active) != 4 {
			t.Fatalf("%d node-roles reported ACTIVE on the feed, want 4", len(active))
		}
		var status struct {
			Annealer struct {
				States []struct {
					State string
					Count int
				}
				Leader bool
			}
			Deployments struct {
				Edges []struct{ Node struct{ Name, Status string } }
			}
		}
		srv.Query(t, `{ annealer { states { state count } leader } deployments(where: {name: "system"}) { edges { node { name status } } } }`, nil, &status)
		counts := map[string]int{}
		for _, s := range status.Annealer.States {
			counts[s.State] = s.Count
		}
		if counts["ACTIVE"] != 4 || !status.Annealer.Leader || status.Deployments.Edges[0].Node.Status != "ACTIVE" {
			t.Fatalf("status = %+v", status)
		}
		var retry struct{ RetryNodeRole struct{ Errors []domainErr } }
		srv.Query(t, `mutation($id: ID!) { retryNodeRole(id: $id) { errors { field code message } } }`, map[string]any{"id": netID}, &retry)
		if len(retry.RetryNodeRole.Errors) != 1 || retry.RetryNodeRole.Errors[0].Code != "ILLEGAL_TRANSITION" {
			t.Fatalf("retry of an ACTIVE node-role: %+v", retry)
		}
		var runs struct {
			Runs struct {
				TotalCount int
				Edges      []struct{ Node struct{ Status, Log string } }
			}
		}
		srv.Query(t, fmt.Sprintf(`{ runs(where: {hasNodeRoleWith: {id: %s}}) { totalCount edges { node { status log } } } }`, netID), nil, &runs)
		if runs.Runs.TotalCount != 1 || runs.Runs.Edges[0].Node.Status != "SUCCEEDED" {
			t.Fatalf("runs of network = %+v", runs)
		}
	})
}
