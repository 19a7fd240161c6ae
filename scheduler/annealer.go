package scheduler

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/scheduler/executor"
)

// Options tune an Annealer. The zero value is usable.
type Options struct {
	// Concurrency bounds the runs in flight across all machines (default 256).
	Concurrency int
	// PerKeyLimit bounds the runs in flight per executor concurrency key, e.g. per BMC address
	// (default 1).
	PerKeyLimit int
	// BatchSize bounds the node-roles claimed in one transaction (default 1000).
	BatchSize int
	// CommitChunk bounds the node-roles one commit or retry-all transaction changes (default
	// 5000); larger operations take several transactions.
	CommitChunk int
	// Sweep is the period of the gocron sweep (default 1s). Wake-ups in between come from commits,
	// retries and finished runs.
	Sweep time.Duration
	// FlushEvery is how long the committer gathers finished runs before writing them in one
	// transaction (default 5ms).
	FlushEvery time.Duration
	// ClaimEvery is the shortest interval between two claim rounds (default 20ms): wake-ups in
	// between are merged, so claims come in large batches.
	ClaimEvery time.Duration
	// DefaultTimeout bounds a run when neither the role nor the executor sets a timeout (10m).
	DefaultTimeout time.Duration
	// Elector decides whether this process schedules. Nil means always (SQLite: one server).
	Elector gocron.Elector
	// Owner names this scheduler instance on the runs it claims (default host-pid-random).
	Owner string
	// Log receives the runner's messages (default slog.Default()).
	Log *slog.Logger
}

// Annealer is the annealer of one Prybar process: the domain API plus, once started, the runner.
// It is safe for concurrent use.
type Annealer struct {
	st   *store.Store
	reg  *executor.Registry
	opts Options
	log  *slog.Logger

	wake chan struct{}
	done chan struct{} // closed by Stop

	roles roleCache

	// runner state
	mu        sync.Mutex
	inflight  int
	keyBusy   map[string]int
	results   chan result
	leading   atomic.Bool
	recovered atomic.Uint64 // elector term last recovered
	lastTick  atomic.Int64
	vacuuming atomic.Bool
	running   map[int]bool // run ids in flight in this process
	sched     gocron.Scheduler
	wg        sync.WaitGroup
	cancel    context.CancelFunc
	started   bool
	// termCtx is the parent of the runs claimed in the current leadership term; losing the
	// leadership cancels it (termCancel), so a deposed leader stops its runs at once.
	termCtx    context.Context
	termCancel context.CancelFunc
	term       uint64
	// epoch is the leader epoch of the current term (leader.Elector: the number bumped in the
	// database on each acquisition; 0 without an elector). Runs are stamped with it, and claims
	// and completions are refused when the database holds a newer one.
	epoch int64
	stats counters
}

type counters struct {
	claimed, succeeded, failed, recovered atomic.Int64
}

// New returns an Annealer over st, running executors from reg (which may be extended until Start).
func New(st *store.Store, reg *executor.Registry, opts Options) *Annealer {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 256
	}
	if opts.PerKeyLimit <= 0 {
		opts.PerKeyLimit = 1
	}
	if opts.CommitChunk <= 0 {
		opts.CommitChunk = txChunk
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 1000
	}
	if opts.Sweep <= 0 {
		opts.Sweep = time.Second
	}
	if opts.FlushEvery <= 0 {
		opts.FlushEvery = 5 * time.Millisecond
	}
	if opts.ClaimEvery <= 0 {
		opts.ClaimEvery = 20 * time.Millisecond
	}
	if opts.DefaultTimeout <= 0 {
		opts.DefaultTimeout = 10 * time.Minute
	}
	if opts.Owner == "" {
		opts.Owner = defaultOwner()
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if reg == nil {
		reg = executor.NewRegistry(executor.Noop{})
	}
	return &Annealer{
		st: st, reg: reg, opts: opts, log: opts.Log,
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		keyBusy: map[string]int{},
		running: map[int]bool{},
		results: make(chan result, opts.Concurrency+16),
	}
}

// Registry returns the executors the runner uses.
func (a *Annealer) Registry() *executor.Registry { return a.reg }

// Store returns the store the annealer writes to.
func (a *Annealer) Store() *store.Store { return a.st }

// Wake asks the runner to sweep now instead of at the next tick. It never blocks; several wakes
// before the runner looks collapse into one.
func (a *Annealer) Wake() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}
