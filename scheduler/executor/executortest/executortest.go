// Package executortest is the conformance suite every executor runs (noop, test, bmc, and the PXE
// executors to come). An executor's test calls Run with a Factory that sets up its real peer (a
// simulator, a file, a BMC) and returns the inputs to drive it with; the suite checks the contract
// the annealer relies on:
//
//   - Name and Timeout are set; a quick run succeeds.
//   - Declared idempotency is honoured: an executor that says Idempotent runs the same input twice
//     without error, and when the case can count effects, a second run of a non-idempotent one is
//     not needed for recovery — its Verifier answers instead.
//   - The timeout is honoured and cancellation returns promptly (within Grace), with an error.
//   - Verifier.Applied, given the input as recovery rebuilds it from the database after a restart
//     (Case.Rebuild), reports a completed run's effect as applied.
//
// See docs/executors.md for the checklist of adding an executor.
package executortest

import (
	"context"
	"testing"
	"time"

	"github.com/prybar/prybar/scheduler/executor"
)

// Grace is how long after its context ends a run may take to return.
const Grace = 5 * time.Second

// Case is one executor and the inputs that exercise it.
type Case struct {
	Exec executor.Executor
	// Quick is an input that succeeds promptly (its RunID must be set).
	Quick executor.Input
	// Slow is an input whose run would take far longer than a second unless cancelled (a long
	// delay, a power state the BMC never reaches). Nil skips the timeout and cancellation checks
	// (only for executors that never block, like noop).
	Slow *executor.Input
	// Rebuild returns in as the annealer rebuilds it from the database after a restart (the
	// recorded snapshot plus the machine and BMC read anew). Nil means in unchanged.
	Rebuild func(t *testing.T, in executor.Input) executor.Input
	// Effects counts how often in's external effect took place; nil when it cannot be observed.
	Effects func(t *testing.T, in executor.Input) int
}

// Factory sets up a fresh executor and its peer for one check.
type Factory func(t *testing.T) Case

// Run runs the suite.
func Run(t *testing.T, factory Factory) {
	t.Run("contract", func(t *testing.T) {
		c := factory(t)
		if c.Exec.Name() == "" {
			t.Error("Name is empty")
		}
		if c.Exec.Timeout() <= 0 {
			t.Errorf("Timeout %s: want a positive bound", c.Exec.Timeout())
		}
		if _, err := c.Exec.Run(ctx(t), c.Quick); err != nil {
			t.Fatalf("quick run: %v", err)
		}
	})
	t.Run("idempotency", func(t *testing.T) {
		c := factory(t)
		_, isVerifier := c.Exec.(executor.Verifier)
		if _, err := c.Exec.Run(ctx(t), c.Quick); err != nil {
			t.Fatalf("first run: %v", err)
		}
		if c.Exec.Idempotent() {
			// Declared idempotent: recovery re-runs it blindly, so a second run must be harmless.
			if _, err := c.Exec.Run(ctx(t), c.Quick); err != nil {
				t.Fatalf("idempotent executor failed its second run of the same input: %v", err)
			}
			return
		}
		if !isVerifier {
			t.Logf("%s is neither idempotent nor a Verifier: interrupted runs end in ERROR for an operator", c.Exec.Name())
			return
		}
		if c.Effects != nil {
			if n := c.Effects(t, c.Quick); n != 1 {
				t.Errorf("one run applied its effect %d times", n)
			}
		}
	})
	if factory(t).Slow == nil {
		return
	}
	t.Run("timeout", func(t *testing.T) {
		c := factory(t)
		cx, cancel := context.WithTimeout(ctx(t), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.Exec.Run(cx, *c.Slow)
		if took := time.Since(start); took > 300*time.Millisecond+Grace {
			t.Errorf("run returned %s after a 300ms timeout", took)
		}
		if err == nil {
			t.Error("a run cut by its timeout reported success")
		}
	})
	t.Run("cancellation", func(t *testing.T) {
		c := factory(t)
		cx, cancel := context.WithCancel(ctx(t))
		time.AfterFunc(200*time.Millisecond, cancel)
		start := time.Now()
		_, err := c.Exec.Run(cx, *c.Slow)
		if took := time.Since(start); took > 200*time.Millisecond+Grace {
			t.Errorf("run returned %s after cancellation at 200ms", took)
		}
		if err == nil {
			t.Error("a cancelled run reported success")
		}
	})
	t.Run("applied-after-restart", func(t *testing.T) {
		c := factory(t)
		v, ok := c.Exec.(executor.Verifier)
		if !ok {
			t.Logf("%s is not a Verifier: nothing to check", c.Exec.Name())
			return
		}
		if _, err := c.Exec.Run(ctx(t), c.Quick); err != nil {
			t.Fatal(err)
		}
		in := c.Quick
		if c.Rebuild != nil {
			in = c.Rebuild(t, in)
		}
		applied, _, err := v.Applied(ctx(t), in)
		if err != nil || !applied {
			t.Fatalf("Applied after a completed run = %v, %v; want true (input rebuilt as after a restart)", applied, err)
		}
	})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}
