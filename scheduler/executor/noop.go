package executor

import (
	"context"
	"time"
)

// Noop is the executor of roles that only mark a point in the graph (noop-base, ready …): it
// returns at once with no output. It is idempotent, so recovery simply re-queues it.
type Noop struct{}

// Name implements Executor.
func (Noop) Name() string { return "noop" }

// Run implements Executor.
func (Noop) Run(ctx context.Context, in Input) (Result, error) { return Result{}, ctx.Err() }

// Idempotent implements Executor.
func (Noop) Idempotent() bool { return true }

// Timeout implements Executor.
func (Noop) Timeout() time.Duration { return time.Minute }

// ConcurrencyKey implements Executor: noop needs no resource.
func (Noop) ConcurrencyKey(Input) string { return "" }
