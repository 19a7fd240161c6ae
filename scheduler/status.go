package scheduler

import (
	"context"

	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/scheduler/nodestate"
)

// Status is a snapshot of the annealer for dashboards and health checks.
type Status struct {
	// States counts node-roles per state (every state present, zero included).
	States map[nodestate.State]int
	// InFlight is the number of runs executing in this process.
	InFlight int
	// Queue is the number of node-roles waiting to run (TODO).
	Queue int
	// Leader reports whether this process runs the scheduler.
	Leader bool
	// Owner is this scheduler instance's name (Run.owner of the runs it claims).
	Owner string
	// Claimed, Succeeded, Failed and Recovered count runs since this process started.
	Claimed, Succeeded, Failed, Recovered int64
}

// Status returns the current counts.
func (a *Annealer) Status(ctx context.Context) (Status, error) {
	counts, err := stateCounts(ctx, a.st.Client.NodeRole.Query())
	if err != nil {
		return Status{}, err
	}
	for _, s := range nodestate.States() {
		counts[s] += 0
	}
	a.mu.Lock()
	inflight := a.inflight
	a.mu.Unlock()
	return Status{
		States: counts, InFlight: inflight, Queue: counts[nodestate.Todo], Leader: a.leading.Load(), Owner: a.opts.Owner,
		Claimed: a.stats.claimed.Load(), Succeeded: a.stats.succeeded.Load(), Failed: a.stats.failed.Load(),
		Recovered: a.stats.recovered.Load(),
	}, nil
}

var _ = noderole.Table
