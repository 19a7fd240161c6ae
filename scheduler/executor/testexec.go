package executor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"
)

// Test is the executor of the test-step and demonstration roles: its attributes decide what a
// run does, so tests and demos can exercise delays, failures and crash recovery without hardware.
//
// Attributes read from Input.Attrs:
//
//	delay      duration string ("250ms"): how long the run takes (honours cancellation)
//	fail       bool: fail every run
//	fail_rate  number 0..1: probability that a run fails
//	effect     string: when set, after the delay append "<noderole-id> <run-id> <effect>\n" to
//	           EffectsFile with one O_APPEND write; the effect is the "external side effect" that
//	           crash tests count
//	hold       duration string: wait this long after writing the effect before returning, which
//	           widens the window where a crash leaves an effect applied but not recorded (so
//	           crash tests exercise Verifier)
//
// It is not idempotent unless configured so (an effect written twice is exactly what crash
// recovery must prevent), and it implements Verifier by looking for the interrupted run's line in
// the effects file.
type Test struct {
	// EffectsFile receives one line per effect; "" disables effects (runs with effect set fail,
	// so a misconfigured test does not silently pass).
	EffectsFile string
	// IsIdempotent is what Idempotent reports (default false).
	IsIdempotent bool
	// DefaultTimeout is Timeout(); 0 means one minute.
	DefaultTimeout time.Duration

	mu sync.Mutex // serialises verification reads against this process's appends
}

// Name implements Executor.
func (*Test) Name() string { return "test" }

// Idempotent implements Executor.
func (t *Test) Idempotent() bool { return t.IsIdempotent }

// Timeout implements Executor.
func (t *Test) Timeout() time.Duration {
	if t.DefaultTimeout > 0 {
		return t.DefaultTimeout
	}
	return time.Minute
}

// ConcurrencyKey implements Executor: a test role may name a shared resource through the
// "concurrency_key" attribute, so tests can exercise per-key limits.
func (*Test) ConcurrencyKey(in Input) string {
	k, _ := in.Attrs["concurrency_key"].(string)
	return k
}

// Run implements Executor.
func (t *Test) Run(ctx context.Context, in Input) (Result, error) {
	var log strings.Builder
	if s, ok := in.Attrs["delay"].(string); ok && s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			return Result{Log: "bad delay"}, fmt.Errorf("test executor: delay %q: %w", s, err)
		}
		fmt.Fprintf(&log, "sleeping %s\n", d)
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return Result{Log: log.String() + "cancelled\n"}, ctx.Err()
		case <-timer.C:
		}
	}
	if fail, _ := in.Attrs["fail"].(bool); fail {
		return Result{Log: log.String() + "failing: fail is set\n"}, errors.New("test executor: fail is set")
	}
	if rate, ok := number(in.Attrs["fail_rate"]); ok && rate > 0 && rand.Float64() < rate {
		return Result{Log: log.String() + "failing: fail_rate\n"}, fmt.Errorf("test executor: random failure (fail_rate %g)", rate)
	}
	out := map[string]any{"test_run": in.RunID}
	if eff, _ := in.Attrs["effect"].(string); eff != "" {
		if t.EffectsFile == "" {
			return Result{Log: log.String()}, errors.New("test executor: effect set but no effects file configured")
		}
		if err := Fence(ctx); err != nil {
			return Result{Log: log.String() + "fenced before the effect\n"}, err
		}
		line := fmt.Sprintf("%d %d %s\n", in.NodeRoleID, in.RunID, eff)
		if err := t.appendLine(line); err != nil {
			return Result{Log: log.String()}, err
		}
		fmt.Fprintf(&log, "effect %q written\n", eff)
		out["test_effect"] = eff
		if s, ok := in.Attrs["hold"].(string); ok && s != "" {
			if d, err := time.ParseDuration(s); err == nil {
				select {
				case <-ctx.Done():
					return Result{Log: log.String() + "cancelled after the effect\n"}, ctx.Err()
				case <-time.After(d):
				}
			}
		}
	}
	return Result{Output: out, Log: log.String() + "ok\n"}, nil
}

func (t *Test) appendLine(line string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	f, err := os.OpenFile(t.EffectsFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("test executor: %w", err)
	}
	// One write of the whole line: O_APPEND makes it land whole at the end even with other writers.
	_, werr := f.WriteString(line)
	cerr := f.Close()
	if werr != nil {
		return fmt.Errorf("test executor: append effect: %w", werr)
	}
	return cerr
}

// Applied implements Verifier: the interrupted run's effect happened if its line is in the file.
func (t *Test) Applied(ctx context.Context, in Input) (bool, map[string]any, error) {
	if t.EffectsFile == "" {
		return false, nil, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	f, err := os.Open(t.EffectsFile)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil, nil
	}
	if err != nil {
		return false, nil, err
	}
	defer f.Close()
	prefix := fmt.Sprintf("%d %d ", in.NodeRoleID, in.RunID)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, prefix) {
			return true, map[string]any{"test_run": in.RunID, "test_effect": strings.TrimPrefix(line, prefix), "test_verified": true}, nil
		}
	}
	return false, nil, sc.Err()
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	}
	return 0, false
}
