package nodestate

import (
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// events lists every event variant; the boolean-carrying events appear once
// per value so the table below is exhaustive.
var events = []Event{
	Commit{ParentsActive: true}, Commit{ParentsActive: false},
	Start{}, Succeed{}, Fail{}, Retry{},
	ParentFailed{}, ParentsActive{}, Reanneal{}, DescendantReanneal{},
	Propose{},
	Recover{Idempotent: true}, Recover{Idempotent: false},
}

func key(e Event) string {
	switch e := e.(type) {
	case Commit:
		return fmt.Sprintf("Commit/%v", e.ParentsActive)
	case Recover:
		return fmt.Sprintf("Recover/%v", e.Idempotent)
	}
	return e.Name()
}

// x marks an illegal transition.
const x State = ""

// table is the contract, spelled out for every (state, event) pair. Columns in
// the order of events.
var table = map[State][13]State{
	//           Commit/t  Commit/f  Start       Succeed Fail   Retry ParentFailed ParentsActive Reanneal DescReanneal Propose   Recover/t Recover/f
	Proposed:   {Todo, Blocked, x, x, x, x, Proposed, x, x, Proposed, Proposed, x, x},
	Todo:       {x, x, Transition, x, x, x, Blocked, x, x, Blocked, Proposed, x, x},
	Blocked:    {x, x, x, x, x, x, Blocked, Todo, x, Blocked, Proposed, x, x},
	Transition: {x, x, x, Active, Error, x, x, x, x, x, x, Todo, Error},
	Active:     {x, x, x, x, x, x, Blocked, x, Todo, Blocked, Proposed, x, x},
	Error:      {x, x, x, x, x, Todo, Blocked, x, x, Blocked, Proposed, x, x},
}

func TestNextExhaustive(t *testing.T) {
	if len(table) != len(States()) {
		t.Fatalf("table covers %d states, want %d", len(table), len(States()))
	}
	for _, s := range States() {
		row, ok := table[s]
		if !ok {
			t.Fatalf("no table row for %s", s)
		}
		for i, e := range events {
			want := row[i]
			got, err := Next(s, e)
			if want == x {
				var ite *IllegalTransitionError
				if !errors.As(err, &ite) {
					t.Errorf("Next(%s, %s) = %s, %v; want IllegalTransitionError", s, key(e), got, err)
					continue
				}
				if ite.From != s || ite.Event != e {
					t.Errorf("Next(%s, %s): error carries From=%s Event=%v", s, key(e), ite.From, ite.Event)
				}
				if got != s {
					t.Errorf("Next(%s, %s) returned %s with its error; want the unchanged state", s, key(e), got)
				}
				continue
			}
			if err != nil || got != want {
				t.Errorf("Next(%s, %s) = %s, %v; want %s", s, key(e), got, err, want)
			}
		}
	}
}

func TestNextUnknownState(t *testing.T) {
	for _, s := range []State{"", "todo", "DONE"} {
		for _, e := range events {
			_, err := Next(s, e)
			var ite *IllegalTransitionError
			if !errors.As(err, &ite) || !strings.Contains(err.Error(), "unknown state") {
				t.Errorf("Next(%q, %s) error = %v", s, key(e), err)
			}
		}
	}
	if _, err := Next(Todo, nil); err == nil {
		t.Error("Next(TODO, nil) succeeded")
	}
}

func TestErrorMessage(t *testing.T) {
	_, err := Next(Blocked, Start{})
	if got, want := err.Error(), "nodestate: illegal transition: Start from BLOCKED"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	_, err = Next(Active, Recover{Idempotent: true})
	if got, want := err.Error(), "nodestate: illegal transition: Recover{Idempotent:true} from ACTIVE"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestReadmeDiagram keeps the mermaid diagram and Next in agreement: every
// labelled edge is a transition Next makes, and every state-changing
// transition is drawn.
func TestReadmeDiagram(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	edge := regexp.MustCompile(`(?m)^\s+([A-Z]+) --> ([A-Z]+): (\w+)(?: \(([^)]*)\))?$`)
	drawn := map[string]bool{}
	for _, m := range edge.FindAllStringSubmatch(string(b), -1) {
		from, to, ev, note := State(m[1]), State(m[2]), m[3], m[4]
		var matched bool
		for _, e := range events {
			if e.Name() != ev {
				continue
			}
			got, err := Next(from, e)
			if err == nil && got == to {
				matched = true
				drawn[fmt.Sprintf("%s %s %s", from, key(e), to)] = true
			}
		}
		if !matched {
			t.Errorf("README draws %s --%s (%s)--> %s, which Next does not do", from, ev, note, to)
		}
	}
	for _, s := range States() {
		for _, e := range events {
			got, err := Next(s, e)
			if err != nil || got == s {
				continue
			}
			if !drawn[fmt.Sprintf("%s %s %s", s, key(e), got)] {
				t.Errorf("README does not draw %s --%s--> %s", s, key(e), got)
			}
		}
	}
}

func TestHelpers(t *testing.T) {
	for _, s := range States() {
		if !Valid(s) {
			t.Errorf("Valid(%s) = false", s)
		}
		if p, err := Parse(string(s)); err != nil || p != s {
			t.Errorf("Parse(%s) = %s, %v", s, p, err)
		}
		if got, want := Runnable(s), s == Todo; got != want {
			t.Errorf("Runnable(%s) = %v", s, got)
		}
		if got, want := Terminal(s), s == Active || s == Error; got != want {
			t.Errorf("Terminal(%s) = %v", s, got)
		}
	}
	if Valid("active") {
		t.Error("Valid is case-insensitive")
	}
	if _, err := Parse("active"); err == nil {
		t.Error("Parse(active) succeeded")
	}
	if Initial(true) != Todo || Initial(false) != Blocked {
		t.Error("Initial disagrees with Commit")
	}
}

func TestBackoff(t *testing.T) {
	p := RetryPolicy{Attempts: 5, Initial: 2 * time.Second, Max: 10 * time.Second}
	for _, tc := range []struct {
		p       RetryPolicy
		attempt int
		want    time.Duration
	}{
		{p, 0, 0},
		{p, -1, 0},
		{p, 1, 2 * time.Second},
		{p, 2, 4 * time.Second},
		{p, 3, 8 * time.Second},
		{p, 4, 10 * time.Second},
		{p, 100, 10 * time.Second},
		{RetryPolicy{Initial: 3 * time.Second, Max: 2 * time.Second}, 1, 2 * time.Second},
		{RetryPolicy{Initial: time.Second}, 4, 8 * time.Second},
		{RetryPolicy{Initial: time.Second}, 1000, math.MaxInt64}, // no cap: saturates, never wraps
		{RetryPolicy{Max: time.Second}, 3, 0},
	} {
		if got := Backoff(tc.p, tc.attempt); got != tc.want {
			t.Errorf("Backoff(%+v, %d) = %v, want %v", tc.p, tc.attempt, got, tc.want)
		}
	}
}

func TestRetryPolicy(t *testing.T) {
	p := RetryPolicy{Attempts: 3, Initial: time.Second, Max: time.Minute}
	for _, tc := range []struct {
		failures int
		wait     time.Duration
		ok       bool
	}{
		{0, 0, false},
		{1, time.Second, true},
		{2, 2 * time.Second, true},
		{3, 0, false}, // three runs in total, all failed
	} {
		wait, ok := p.Retry(tc.failures)
		if wait != tc.wait || ok != tc.ok {
			t.Errorf("Retry(%d) = %v, %v; want %v, %v", tc.failures, wait, ok, tc.wait, tc.ok)
		}
	}
	for _, attempts := range []int{0, 1} {
		if _, ok := (RetryPolicy{Attempts: attempts, Initial: time.Second}).Retry(1); ok {
			t.Errorf("Attempts=%d retries automatically", attempts)
		}
	}
}
