package scheduler

import (
	"context"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/event"
	"github.com/prybar/prybar/ent/machine"
	"github.com/prybar/prybar/internal/pgtest"
)

// TestMachineStateFollowsNodeRoles drives machines through the annealer and checks the derived
// machine state after each step: bound but uncommitted → NEW, committed → BUSY, all ACTIVE →
// READY, a failure → ERROR (also on a machine whose node-role waits behind the failure on another
// machine), retry → READY; every change is a machine.updated event.
func TestMachineStateFollowsNodeRoles(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testMachineState(t, "") })
	t.Run("postgres", func(t *testing.T) { testMachineState(t, pgtest.New(t)) })
}

func testMachineState(t *testing.T, dsn string) {
	e := newEnv(t, dsn, Options{})
	ctx := context.Background()
	ms := e.machines(2, "mstate")
	dep, err := e.a.CreateDeployment(ctx, "mstate", 0)
	if err != nil {
		t.Fatal(err)
	}
	ids := e.bindChain(dep.ID, ms)
	// A third machine whose "ready" reuses machine 0's chain: it waits behind machine 0.
	follower := e.machines(1, "mfollow")[0]
	if _, err := e.a.BindRole(ctx, follower, "ready", dep.ID); err != nil {
		t.Fatal(err)
	}
	bad := ids[ms[0]]["network"]
	if _, err := e.a.SetAttribute(ctx, AttrTarget{NodeRoleID: bad}, "/fail", true); err != nil {
		t.Fatal(err)
	}
	state := func(id int) machine.State {
		t.Helper()
		m, err := e.st.Client.Machine.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return m.State
	}
	want := func(step string, exp map[int]machine.State) {
		t.Helper()
		for id, s := range exp {
			if got := state(id); got != s {
				t.Errorf("%s: machine %d is %s, want %s", step, id, got, s)
			}
		}
	}
	want("bound, not committed", map[int]machine.State{ms[0]: machine.StateNEW, ms[1]: machine.StateNEW, follower: machine.StateNEW})

	if _, err := e.a.CommitDeployment(ctx, dep.ID); err != nil {
		t.Fatal(err)
	}
	want("committed", map[int]machine.State{ms[0]: machine.StateBUSY, ms[1]: machine.StateBUSY, follower: machine.StateBUSY})

	e.start()
	e.settle(30 * time.Second)
	want("after the failure", map[int]machine.State{ms[0]: machine.StateERROR, ms[1]: machine.StateREADY, follower: machine.StateERROR})

	if _, err := e.a.SetAttribute(ctx, AttrTarget{NodeRoleID: bad}, "/fail", false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.a.RetryNodeRole(ctx, bad); err != nil {
		t.Fatal(err)
	}
	// The retry itself moves both machines out of ERROR in its own transaction.
	if s := state(follower); s == machine.StateERROR {
		t.Errorf("follower still ERROR after the retry of the failure it waited on")
	}
	e.settle(30 * time.Second)
	want("after the retry", map[int]machine.State{ms[0]: machine.StateREADY, ms[1]: machine.StateREADY, follower: machine.StateREADY})

	// Each change was recorded: machine 1 went NEW → BUSY → READY, in that order.
	evs, err := e.st.Client.Event.Query().Where(event.Kind("machine.updated"), event.ObjectID(ms[1])).
		Order(ent.Asc(event.FieldSeq)).All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var seen []any
	for _, ev := range evs {
		if s, ok := ev.Changes["state"]; ok {
			seen = append(seen, s)
		}
	}
	if len(seen) != 2 || seen[0] != string(machine.StateBUSY) || seen[1] != string(machine.StateREADY) {
		t.Errorf("machine.updated state events for machine 1: %v, want [BUSY READY]", seen)
	}
}
