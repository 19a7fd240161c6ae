package scheduler

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/prybar/prybar/ent/noderole"
)

// TestReanneal: changing a committed attribute re-anneals exactly the ACTIVE node-roles that read
// it and their descendants; every other node-role keeps its single run.
func TestReanneal(t *testing.T) {
	e := newEnv(t, "", Options{})
	ctx := context.Background()
	ms := e.machines(3, "re")
	dep, _ := e.a.CreateDeployment(ctx, "re", 0)
	ids := e.bindChain(dep.ID, ms)
	e.start()
	if _, err := e.a.CommitDeployment(ctx, dep.ID); err != nil {
		t.Fatal(err)
	}
	e.settle(20 * time.Second)
	runCounts := func() map[int]int {
		out := map[int]int{}
		nrs, err := e.st.Client.NodeRole.Query().WithRuns().All(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, nr := range nrs {
			if nr.State != noderole.StateACTIVE {
				t.Fatalf("node-role %d %s", nr.ID, nr.State)
			}
			if nr.RunCount != len(nr.Edges.Runs) {
				t.Fatalf("run_count %d but %d runs", nr.RunCount, len(nr.Edges.Runs))
			}
			out[nr.ID] = len(nr.Edges.Runs)
		}
		return out
	}
	base := runCounts()

	// 1. A node-role attribute on machine 0's network: it and its descendants only.
	target := ids[ms[0]]["network"]
	ch, err := e.a.SetAttribute(ctx, AttrTarget{NodeRoleID: target}, "/mtu", 9000)
	if err != nil {
		t.Fatal(err)
	}
	wantBlocked := []int{ids[ms[0]]["os-install"], ids[ms[0]]["ready"]}
	slices.Sort(wantBlocked)
	if !slices.Equal(ch.Reannealed, []int{target}) || !slices.Equal(ch.Blocked, wantBlocked) {
		t.Fatalf("re-annealed %v blocked %v; want [%d] %v", ch.Reannealed, ch.Blocked, target, wantBlocked)
	}
	// Setting the same value again changes nothing.
	if ch, err := e.a.SetAttribute(ctx, AttrTarget{NodeRoleID: target}, "mtu", 9000); err != nil || len(ch.Reannealed) != 0 {
		t.Fatalf("same value re-annealed %v %v", ch, err)
	}
	e.settle(20 * time.Second)
	after := runCounts()
	for id, n := range after {
		want := base[id]
		if id == target || slices.Contains(wantBlocked, id) {
			want++
		}
		if n != want {
			t.Errorf("node-role %d: %d runs, want %d", id, n, want)
		}
	}
	// The new value reached the run's input.
	runs := e.runsOf(target)
	if v := runs[len(runs)-1].Input["attrs"].(map[string]any)["mtu"]; v != float64(9000) {
		t.Errorf("input mtu %v", v)
	}

	// 2. A deployment-role attribute read by os-install everywhere, except on machine 2 which
	// overrides it in its own data (so it does not read the deployment's value).
	over := ids[ms[2]]["os-install"]
	if _, err := e.a.SetAttribute(ctx, AttrTarget{NodeRoleID: over}, "/os/name", "debian"); err != nil {
		t.Fatal(err)
	} // same as the default: no change
	base = runCounts()
	ch, err = e.a.SetAttribute(ctx, AttrTarget{DeploymentID: dep.ID, Role: "os-install"}, "/os/name", "ubuntu")
	if err != nil {
		t.Fatal(err)
	}
	want := []int{ids[ms[0]]["os-install"], ids[ms[1]]["os-install"]}
	slices.Sort(want)
	if !slices.Equal(ch.Reannealed, want) {
		t.Fatalf("deployment change re-annealed %v, want %v", ch.Reannealed, want)
	}
	e.settle(20 * time.Second)
	after = runCounts()
	for id, n := range after {
		w := base[id]
		if slices.Contains(want, id) || id == ids[ms[0]]["ready"] || id == ids[ms[1]]["ready"] {
			w++
		}
		if n != w {
			t.Errorf("node-role %d: %d runs, want %d", id, n, w)
		}
	}
	_, err = e.a.SetAttribute(ctx, AttrTarget{DeploymentID: dep.ID, Role: "network"}, "/mtu", 1)
	wantCode(t, err, "INVALID", "/mtu")
}
