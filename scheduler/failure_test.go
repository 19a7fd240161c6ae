package scheduler

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/ent/role"
	"github.com/prybar/prybar/ent/run"
	"github.com/prybar/prybar/internal/domain"
	"github.com/prybar/prybar/scheduler/catalog"
)

var chain = []string{"provisioner-base", "network", "os-install", "ready"}

// bindChain binds the demonstration chain on each machine and returns machine → role → id.
func (e *env) bindChain(dep int, ms []int) map[int]map[string]int {
	e.t.Helper()
	ctx := context.Background()
	for _, r := range chain {
		if _, err := e.a.BindRoles(ctx, ms, r, dep); err != nil {
			e.t.Fatal(err)
		}
	}
	nrs, err := e.st.Client.NodeRole.Query().Where(noderole.DeploymentID(dep)).WithRole().All(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[int]map[string]int{}
	for _, nr := range nrs {
		if out[nr.MachineID] == nil {
			out[nr.MachineID] = map[string]int{}
		}
		out[nr.MachineID][nr.Edges.Role.Name] = nr.ID
	}
	return out
}

func wantCode(t *testing.T, err error, code domain.Code, contains ...string) {
	t.Helper()
	var de *domain.Error
	if !errors.As(err, &de) || de.Code != code {
		t.Fatalf("want domain error %s, got %v", code, err)
	}
	for _, c := range contains {
		if !strings.Contains(de.Message, c) {
			t.Errorf("error %q does not mention %q", de.Message, c)
		}
	}
}

// TestFailureIsolationAndRetry: a failing node-role ends in ERROR after its retry policy, its
// descendants are BLOCKED, the other machine's chain still becomes ACTIVE; fixing the attribute
// and RetryNodeRole completes the chain.
func TestFailureIsolationAndRetry(t *testing.T) {
	e := newEnv(t, "", Options{})
	ctx := context.Background()
	ms := e.machines(2, "fail")
	dep, err := e.a.CreateDeployment(ctx, "f", 0)
	if err != nil {
		t.Fatal(err)
	}
	ids := e.bindChain(dep.ID, ms)
	bad := ids[ms[0]]["network"]
	if _, err := e.a.SetAttribute(ctx, AttrTarget{NodeRoleID: bad}, "/fail", true); err != nil {
		t.Fatal(err)
	}
	// Schema validation names the path.
	_, err = e.a.SetAttribute(ctx, AttrTarget{NodeRoleID: bad}, "/mtu", "big")
	wantCode(t, err, domain.Invalid, "/mtu")
	e.start()
	if _, err := e.a.CommitDeployment(ctx, dep.ID); err != nil {
		t.Fatal(err)
	}
	e.settle(20 * time.Second)
	for r, id := range ids[ms[1]] {
		if s := e.nr(id).State; s != noderole.StateACTIVE {
			t.Errorf("healthy machine %s: %s", r, s)
		}
	}
	nb := e.nr(bad)
	if nb.State != noderole.StateERROR || nb.Attempts != 3 || nb.NextAttemptAt != nil {
		t.Fatalf("failing node-role: %s attempts %d next %v status %q", nb.State, nb.Attempts, nb.NextAttemptAt, nb.Status)
	}
	if runs := e.runsOf(bad); len(runs) != 3 || runs[2].Status != run.StatusFAILED || runs[2].Attempt != 3 {
		t.Fatalf("want 3 failed runs (retry policy attempts: 3), got %d", len(runs))
	}
	for _, r := range []string{"os-install", "ready"} {
		if s := e.nr(ids[ms[0]][r]).State; s != noderole.StateBLOCKED {
			t.Errorf("descendant %s: %s, want BLOCKED", r, s)
		}
	}
	if st, _ := e.a.DeploymentState(ctx, dep.ID); st != DeploymentError {
		t.Errorf("deployment %s, want error", st)
	}
	// Retry of a node-role that is not in ERROR is an illegal transition.
	_, err = e.a.RetryNodeRole(ctx, ids[ms[1]]["ready"])
	wantCode(t, err, domain.IllegalTransition)

	if _, err := e.a.SetAttribute(ctx, AttrTarget{NodeRoleID: bad}, "/fail", false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.a.RetryNodeRole(ctx, bad); err != nil {
		t.Fatal(err)
	}
	e.settle(20 * time.Second)
	if st, _ := e.a.DeploymentState(ctx, dep.ID); st != DeploymentActive {
		t.Fatalf("deployment %s after retry, want active", st)
	}
	if runs := e.runsOf(bad); len(runs) != 4 || runs[3].Status != run.StatusSUCCEEDED {
		t.Fatalf("want a 4th, successful run")
	}
}

// TestCatalogueAndConflicts: a cycle is refused naming it, writing nothing; provides and
// conflicts violations are CONFLICT errors naming both roles.
func TestCatalogueAndConflicts(t *testing.T) {
	e := newEnv(t, "", Options{})
	ctx := context.Background()
	before, _ := e.st.Client.Role.Query().Count(ctx)

	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("cyc.yaml", "roles:\n  - {name: a, executor: noop, requires: [c]}\n  - {name: b, executor: noop, requires: [a]}\n  - {name: c, executor: noop, requires: [b]}\n  - {name: fine, executor: noop}\n")
	_, err := e.a.LoadRolesDir(ctx, dir)
	wantCode(t, err, domain.Cycle, "a -> c -> b -> a")
	write("cyc.yaml", "roles:\n  - {name: a, executor: noop, requires: [nope]}\n")
	_, err = e.a.LoadRolesDir(ctx, dir)
	wantCode(t, err, domain.Invalid, `unknown role "nope"`)
	if n, _ := e.st.Client.Role.Query().Count(ctx); n != before {
		t.Fatalf("a refused load wrote roles: %d → %d", before, n)
	}
	// A cycle through a role stored earlier: p, then q requires p, then p redefined to require q.
	write("cyc.yaml", "roles:\n  - {name: p, executor: noop}\n  - {name: q, executor: noop, requires: [p]}\n")
	if _, err := e.a.LoadRolesDir(ctx, dir); err != nil {
		t.Fatal(err)
	}
	res, err := e.a.LoadRolesDir(ctx, dir)
	if err != nil || len(res.Created)+len(res.Updated) != 0 {
		t.Fatalf("reload not idempotent: %v %v", res, err)
	}
	p2, _ := catalog.New(catalog.Role{Name: "p", Executor: "noop"}, catalog.Role{Name: "q", Executor: "noop", Requires: []string{"p"}})
	_ = p2
	_, err = e.a.LoadRoleDefs(ctx, []catalog.Role{{Name: "p", Executor: "noop", Requires: []string{"q"}}})
	wantCode(t, err, domain.Cycle, "p -> q -> p")

	write("cyc.yaml", `roles:
  - {name: dhcp-a, executor: noop, provides: [dhcp-server]}
  - {name: dhcp-b, executor: noop, provides: [dhcp-server]}
  - {name: static-net, executor: noop, conflicts: [dhcp-server]}
  - {name: web, executor: noop}
  - {name: no-web, executor: noop, conflicts: [web]}
`)
	if _, err := e.a.LoadRolesDir(ctx, dir); err != nil {
		t.Fatal(err)
	}
	m := e.machines(1, "conf")[0]
	if _, err := e.a.BindRole(ctx, m, "dhcp-a", e.sys.ID); err != nil {
		t.Fatal(err)
	}
	_, err = e.a.BindRole(ctx, m, "dhcp-b", e.sys.ID)
	wantCode(t, err, domain.Conflict, "dhcp-b", "dhcp-a", "dhcp-server")
	_, err = e.a.BindRole(ctx, m, "static-net", e.sys.ID)
	wantCode(t, err, domain.Conflict, "static-net", "dhcp-a")
	if _, err := e.a.BindRole(ctx, m, "no-web", e.sys.ID); err != nil {
		t.Fatal(err)
	}
	_, err = e.a.BindRole(ctx, m, "web", e.sys.ID) // the conflict declared by the bound role
	wantCode(t, err, domain.Conflict, "no-web", "web")
	_, err = e.a.BindRole(ctx, m, "missing-role", e.sys.ID)
	wantCode(t, err, domain.NotFound)

	// Unbind refuses to orphan committed children.
	d, _ := e.a.CreateDeployment(ctx, "u", 0)
	leaf, err := e.a.BindRole(ctx, m, "ready", d.ID)
	if err != nil {
		t.Fatal(err)
	}
	base, err := e.st.Client.NodeRole.Query().Where(noderole.DeploymentID(d.ID), noderole.HasRoleWith(role.Name("provisioner-base"))).Only(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.a.CommitNodeRole(ctx, leaf.ID); err != nil { // BLOCKED: parents are PROPOSED
		t.Fatal(err)
	}
	_, err = e.a.UnbindRole(ctx, base.ID)
	wantCode(t, err, domain.Conflict, "BLOCKED")
	if _, err := e.a.CommitNodeRole(ctx, leaf.ID); err == nil {
		t.Fatal("committing a committed node-role must be illegal")
	}
	if _, err := e.a.ProposeDeployment(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	removed, err := e.a.UnbindRole(ctx, base.ID)
	if err != nil || len(removed) != 4 {
		t.Fatalf("unbind: %v %v", removed, err)
	}
	_ = ent.Asc
}
