package scheduler

import (
	"context"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/ent/role"
	"github.com/prybar/prybar/ent/run"
)

// TestCrowbarChain: binding the leaf of provisioner-base → network → os-install → ready creates
// the whole ancestry on the machine; after commit everything becomes ACTIVE in dependency order,
// which the Run records prove: each run started after every parent's successful run finished.
func TestCrowbarChain(t *testing.T) {
	e := newEnv(t, "", Options{})
	ctx := context.Background()
	ms := e.machines(3, "chain")
	dep, err := e.a.CreateDeployment(ctx, "lab", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.a.SetAttribute(ctx, AttrTarget{DeploymentID: dep.ID, Role: "network"}, "/delay", "30ms"); err != nil {
		t.Fatal(err)
	}
	// The leaf on one machine brings its whole ancestry.
	leaf, err := e.a.BindRole(ctx, ms[0], "ready", dep.ID)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := e.st.Client.NodeRole.Query().Count(ctx); n != 4 {
		t.Fatalf("want the 4 roles of the chain bound, got %d", n)
	}
	// None of the chain is implicit: on another machine, binding the leaf alone would reuse the
	// first machine's os-install (any binding in the deployment satisfies it). Binding each role
	// in order gives every machine its own chain (the same-machine binding is preferred).
	for _, r := range []string{"provisioner-base", "network", "os-install", "ready"} {
		if _, err := e.a.BindRoles(ctx, ms[1:], r, dep.ID); err != nil {
			t.Fatal(err)
		}
	}
	all, err := e.st.Client.NodeRole.Query().WithRole().WithParents().All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 12 {
		t.Fatalf("want 4 bindings per machine, got %d", len(all))
	}
	for _, nr := range all {
		if nr.State != noderole.StatePROPOSED {
			t.Errorf("%d: %s, want PROPOSED", nr.ID, nr.State)
		}
		wantCohort := map[string]int{"provisioner-base": 0, "network": 1, "os-install": 2, "ready": 3}[nr.Edges.Role.Name]
		if nr.Cohort != wantCohort {
			t.Errorf("%s cohort %d, want %d", nr.Edges.Role.Name, nr.Cohort, wantCohort)
		}
		for _, p := range nr.Edges.Parents {
			if p.MachineID != nr.MachineID {
				t.Errorf("parent on another machine")
			}
		}
	}
	if st, _ := e.a.DeploymentState(ctx, dep.ID); st != DeploymentProposed {
		t.Errorf("state %s", st)
	}
	// Binding again is idempotent.
	again, err := e.a.BindRole(ctx, ms[0], "ready", dep.ID)
	if err != nil || again.ID != leaf.ID {
		t.Fatalf("rebind: %v %v", again, err)
	}
	e.start()
	if _, err := e.a.CommitDeployment(ctx, dep.ID); err != nil {
		t.Fatal(err)
	}
	e.settle(20 * time.Second)
	if st, _ := e.a.DeploymentState(ctx, dep.ID); st != DeploymentActive {
		t.Fatalf("deployment %s, want active", st)
	}
	all, err = e.st.Client.NodeRole.Query().WithParents().WithRuns().All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[int]*ent.NodeRole{}
	for _, nr := range all {
		byID[nr.ID] = nr
	}
	for _, nr := range all {
		if nr.State != noderole.StateACTIVE || nr.RunCount != 1 || len(nr.Edges.Runs) != 1 {
			t.Fatalf("node-role %d: %s runs %d/%d", nr.ID, nr.State, nr.RunCount, len(nr.Edges.Runs))
		}
		r := nr.Edges.Runs[0]
		if r.Status != run.StatusSUCCEEDED || r.FinishedAt == nil || r.Input == nil {
			t.Fatalf("run %+v", r)
		}
		for _, p := range nr.Edges.Parents {
			pr := byID[p.ID].Edges.Runs[0]
			if !r.StartedAt.After(*pr.FinishedAt) {
				t.Errorf("run of %d started %s before parent %d finished %s", nr.ID, r.StartedAt, p.ID, *pr.FinishedAt)
			}
		}
	}
	// os-install wants network:/interface: injected from the parent.
	osr, _ := e.st.Client.NodeRole.Query().Where(noderole.HasRoleWith(role.Name("os-install"))).WithRuns().First(ctx)
	if inj, _ := osr.Edges.Runs[0].Input["injected"].(map[string]any); inj["network:/interface"] != "eth0" {
		t.Errorf("injected %v", osr.Edges.Runs[0].Input["injected"])
	}
	st, err := e.a.Status(ctx)
	if err != nil || st.States["ACTIVE"] != 12 || !st.Leader {
		t.Errorf("status %+v %v", st, err)
	}
}
