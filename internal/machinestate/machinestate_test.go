package machinestate

import (
	"testing"

	"github.com/prybar/prybar/ent/machine"
	"github.com/prybar/prybar/scheduler/nodestate"
)

func TestDerive(t *testing.T) {
	type c = map[nodestate.State]int
	const (
		P = nodestate.Proposed
		T = nodestate.Todo
		B = nodestate.Blocked
		X = nodestate.Transition
		A = nodestate.Active
		E = nodestate.Error
	)
	cases := []struct {
		name string
		f    Facts
		want machine.State
	}{
		{"no node-roles", Facts{}, machine.StateNEW},
		{"no node-roles, discovered", Facts{Discovered: true}, machine.StateDISCOVERED},
		{"only proposed", Facts{Counts: c{P: 3}}, machine.StateNEW},
		{"only proposed, discovered", Facts{Counts: c{P: 3}, Discovered: true}, machine.StateDISCOVERED},
		{"all active", Facts{Counts: c{A: 4}}, machine.StateREADY},
		{"active and a new proposal", Facts{Counts: c{A: 4, P: 1}}, machine.StateREADY},
		{"active, discovered", Facts{Counts: c{A: 1}, Discovered: true}, machine.StateREADY},
		{"todo", Facts{Counts: c{A: 1, T: 1}}, machine.StateBUSY},
		{"transition", Facts{Counts: c{X: 1}}, machine.StateBUSY},
		{"blocked on running parents", Facts{Counts: c{A: 1, B: 2}}, machine.StateBUSY},
		{"blocked behind a failure", Facts{Counts: c{A: 1, B: 2}, BlockedByFailure: true}, machine.StateERROR},
		{"failure flag without blocked node-roles", Facts{Counts: c{A: 1}, BlockedByFailure: true}, machine.StateREADY},
		{"error", Facts{Counts: c{E: 1, A: 3}}, machine.StateERROR},
		{"error wins over running", Facts{Counts: c{E: 1, X: 1, T: 1}}, machine.StateERROR},
		{"zero counts are absent", Facts{Counts: c{E: 0, X: 0, A: 0}}, machine.StateNEW},
	}
	for _, tc := range cases {
		if got := Derive(tc.f); got != tc.want {
			t.Errorf("%s: Derive(%+v) = %s, want %s", tc.name, tc.f, got, tc.want)
		}
	}
}
