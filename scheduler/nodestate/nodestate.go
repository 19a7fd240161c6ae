package nodestate

import (
	"fmt"
	"math"
	"time"
)

// State is the state of a node-role (a role bound to a machine in a
// deployment). The string values are what is stored and shown in the API.
type State string

// The node-role states of DESIGN.md §2.
const (
	Proposed   State = "PROPOSED"
	Todo       State = "TODO"
	Blocked    State = "BLOCKED"
	Transition State = "TRANSITION"
	Active     State = "ACTIVE"
	Error      State = "ERROR"
)

// States returns every state in lifecycle order, e.g. for an ent enum or a
// GraphQL enum.
func States() []State {
	return []State{Proposed, Todo, Blocked, Transition, Active, Error}
}

func (s State) String() string { return string(s) }

// Valid reports whether s is one of the six states.
func Valid(s State) bool {
	switch s {
	case Proposed, Todo, Blocked, Transition, Active, Error:
		return true
	}
	return false
}

// Parse converts a stored or user-supplied string to a State.
func Parse(s string) (State, error) {
	if st := State(s); Valid(st) {
		return st, nil
	}
	return "", fmt.Errorf("nodestate: unknown state %q", s)
}

// Runnable reports whether the scheduler may start a run for a node-role in
// state s. It is only the state half of the rule: the deployment must also be
// committed, the machine alive and available, and no other node-role of the
// machine in TRANSITION.
func Runnable(s State) bool { return s == Todo }

// Terminal reports whether s is the outcome of a run (ACTIVE or ERROR): the
// node-role stays there until something outside it happens (an operator retry,
// the retry policy, a re-anneal, a re-proposal). A deployment whose committed
// node-roles are all terminal has nothing left to do.
func Terminal(s State) bool { return s == Active || s == Error }

// Initial returns the state a PROPOSED node-role takes when committed:
// TODO if every parent is already ACTIVE, otherwise BLOCKED.
func Initial(parentsActive bool) State {
	if parentsActive {
		return Todo
	}
	return Blocked
}

// Event is something that happens to a node-role. The set is closed: only the
// types of this package implement it.
type Event interface {
	// Name is the event's type name, e.g. "Commit".
	Name() string
	isEvent()
}

type (
	// Commit: the node-role or its deployment is committed.
	Commit struct{ ParentsActive bool }
	// Start: the scheduler starts a run.
	Start struct{}
	// Succeed: the run finished successfully.
	Succeed struct{}
	// Fail: the run failed (or timed out).
	Fail struct{}
	// Retry: an operator, or the retry policy, asks for another run.
	Retry struct{}
	// ParentFailed: an ancestor went to ERROR.
	ParentFailed struct{}
	// ParentsActive: every parent is now ACTIVE.
	ParentsActive struct{}
	// Reanneal: a committed attribute the node-role reads changed.
	Reanneal struct{}
	// DescendantReanneal: an ancestor was re-annealed, so what this
	// node-role was built on is about to change.
	DescendantReanneal struct{}
	// Propose: the deployment is proposed again for editing.
	Propose struct{}
	// Recover: the process restarted and found the node-role in TRANSITION
	// with no run behind it. Idempotent is the executor's declaration.
	Recover struct{ Idempotent bool }
)

func (Commit) Name() string             { return "Commit" }
func (Start) Name() string              { return "Start" }
func (Succeed) Name() string            { return "Succeed" }
func (Fail) Name() string               { return "Fail" }
func (Retry) Name() string              { return "Retry" }
func (ParentFailed) Name() string       { return "ParentFailed" }
func (ParentsActive) Name() string      { return "ParentsActive" }
func (Reanneal) Name() string           { return "Reanneal" }
func (DescendantReanneal) Name() string { return "DescendantReanneal" }
func (Propose) Name() string            { return "Propose" }
func (Recover) Name() string            { return "Recover" }

func (Commit) isEvent()             {}
func (Start) isEvent()              {}
func (Succeed) isEvent()            {}
func (Fail) isEvent()               {}
func (Retry) isEvent()              {}
func (ParentFailed) isEvent()       {}
func (ParentsActive) isEvent()      {}
func (Reanneal) isEvent()           {}
func (DescendantReanneal) isEvent() {}
func (Propose) isEvent()            {}
func (Recover) isEvent()            {}

// IllegalTransitionError is returned by Next for an event the state does not
// accept. Callers treat it as a bug or a lost race (the row changed since it
// was read), never as something to paper over.
type IllegalTransitionError struct {
	From  State
	Event Event
}

func (e *IllegalTransitionError) Error() string {
	name := "<nil>"
	if e.Event != nil {
		name = fmt.Sprintf("%+v", e.Event)
		if name == "{}" {
			name = e.Event.Name()
		} else {
			name = e.Event.Name() + name
		}
	}
	if !Valid(e.From) {
		return fmt.Sprintf("nodestate: event %s on unknown state %q", name, string(e.From))
	}
	return fmt.Sprintf("nodestate: illegal transition: %s from %s", name, e.From)
}

// Next returns the state a node-role in state s moves to on event e, or an
// *IllegalTransitionError. It is a pure function; DESIGN.md §2 and this
// package's README hold the diagram.
//
// Two broadcast events, ParentFailed and DescendantReanneal, are sent to every
// descendant, so they leave PROPOSED and BLOCKED unchanged instead of failing;
// Propose likewise leaves PROPOSED unchanged. Everything else must change the
// state or is illegal.
//
// Nothing may move a node-role out of TRANSITION except the end of its run
// (Succeed, Fail) or Recover after a restart: a run is in flight, and
// BLOCKING or re-proposing it would let the scheduler start a second run on
// the same machine. A caller that gets an IllegalTransitionError for
// ParentFailed or DescendantReanneal on a TRANSITION node-role applies it
// once the run ends.
func Next(s State, e Event) (State, error) {
	illegal := func() (State, error) { return s, &IllegalTransitionError{From: s, Event: e} }
	if !Valid(s) {
		return illegal()
	}
	switch e := e.(type) {
	case Commit:
		if s == Proposed {
			return Initial(e.ParentsActive), nil
		}
	case Start:
		if s == Todo {
			return Transition, nil
		}
	case Succeed:
		if s == Transition {
			return Active, nil
		}
	case Fail:
		if s == Transition {
			return Error, nil
		}
	case Retry:
		if s == Error {
			return Todo, nil
		}
	case ParentFailed, DescendantReanneal:
		switch s {
		case Proposed, Blocked:
			return s, nil
		case Todo, Active, Error:
			return Blocked, nil
		}
	case ParentsActive:
		if s == Blocked {
			return Todo, nil
		}
	case Reanneal:
		// Only ACTIVE: a TODO or BLOCKED node-role reads the new value when
		// it runs anyway, and an ERROR one waits for Retry.
		if s == Active {
			return Todo, nil
		}
	case Propose:
		if s != Transition {
			return Proposed, nil
		}
	case Recover:
		if s == Transition {
			// Re-running a non-idempotent executor (say, a disk wipe that
			// may have half happened) is an operator's decision.
			if e.Idempotent {
				return Todo, nil
			}
			return Error, nil
		}
	}
	return illegal()
}

// RetryPolicy is a role's automatic retry rule.
type RetryPolicy struct {
	// Attempts is the total number of runs allowed, the first included;
	// 0 or 1 means failures wait for an operator.
	Attempts int
	// Initial is the delay before the first retry; it doubles with every
	// further failure.
	Initial time.Duration
	// Max caps the delay; 0 means no cap.
	Max time.Duration
}

// Backoff returns the delay before the next run after attempt consecutive
// failed runs (attempt 1 is the first failure): Initial·2^(attempt-1), capped
// at Max. It is deterministic (no jitter): retries are per node-role and
// spread out by the machines' own timing, and a pure function is testable.
func Backoff(p RetryPolicy, attempt int) time.Duration {
	if attempt < 1 || p.Initial <= 0 {
		return 0
	}
	d := p.Initial
	for i := 1; i < attempt; i++ {
		if p.Max > 0 && d >= p.Max {
			break
		}
		if d > math.MaxInt64/2 {
			d = math.MaxInt64 // doubling would overflow
			break
		}
		d *= 2
	}
	if p.Max > 0 && d > p.Max {
		d = p.Max
	}
	return d
}

// Retry reports whether the policy allows another automatic run after
// failures consecutive failed runs, and how long to wait first.
func (p RetryPolicy) Retry(failures int) (time.Duration, bool) {
	if failures < 1 || failures >= p.Attempts {
		return 0, false
	}
	return Backoff(p, failures), true
}
