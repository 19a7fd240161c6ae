// Package executor defines how the annealer hands a node-role to the code that does the work: the
// Executor contract, the per-run input and result, and a Registry built explicitly in main (no
// init-time globals). Concrete executors live with their protocol (provision/…); the generic
// noop and test executors live here.
package executor

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/provision/bmc"
)

// Input is everything a run may read: the node-role's layered attributes and what it asked for
// from its parents. It is recorded on the Run before execution, so every run is reproducible.
type Input struct {
	RunID      int            // the Run record; stable idempotency key for external effects
	NodeRoleID int            // the binding being annealed
	Attempt    int            // 1 for the first attempt
	Machine    Machine        // the machine the role is bound to
	Role       string         // role name
	Attrs      map[string]any // role defaults ⊕ deployment-role ⊕ node-role ⊕ system ⊕ wall
	Injected   map[string]any // attributes wanted from parents (path -> value)
}

// Machine is the subset of the inventory an executor needs, copied so executors never touch ent.
type Machine struct {
	ID   int
	Name string
	BMC  *BMC // nil when the machine has none
}

// BMC describes how to reach the machine's management controller, password already opened. It
// is the protocol-neutral bmc.Endpoint itself (one type end to end: the database record is
// converted once, by bmc.FromRecord, and the Redfish and IPMI clients take the same value).
type BMC = bmc.Endpoint

// Result is what a run produced. Output becomes the node-role's wall (visible to children).
type Result struct {
	Output map[string]any
	Log    string
	// Private is handed back to the executor's Commit (see Committer) and never recorded; the
	// bmc executor carries the typed inventory it read in it.
	Private any
}

// Committer is implemented by executors whose successful run produces records (the bmc
// executor's hardware inventory: machine fields, NICs, disks). Executors never write the database
// themselves: the annealer calls Commit inside the transaction that records the run's success, so
// the run and what it found commit together or not at all. A Commit error fails the run.
type Committer interface {
	Commit(ctx context.Context, tx *ent.Tx, in Input, res Result) error
}

// Executor turns a node-role plus its input into effects and output.
type Executor interface {
	// Name is the catalogue's executor name ("noop", "test", "bmc" …).
	Name() string
	// Run performs the work. It must honour ctx (the run's timeout) and return promptly when it is
	// cancelled. A returned error fails the run; res.Log is kept either way.
	Run(ctx context.Context, in Input) (res Result, err error)
	// Idempotent reports whether running the same input twice is harmless. A run interrupted by a
	// crash is re-queued only when this is true (or a Verifier says the effect is known).
	Idempotent() bool
	// Timeout bounds one run when the role does not set its own.
	Timeout() time.Duration
	// ConcurrencyKey names the resource that allows one run at a time (e.g. a BMC address); ""
	// means no limit beyond the global and per-machine ones.
	ConcurrencyKey(in Input) string
}

// Verifier is implemented by non-idempotent executors that can tell, after a crash, whether an
// interrupted run's effect happened. Recovery then completes or re-queues the node-role instead of
// failing it for an operator to inspect.
type Verifier interface {
	// Applied reports whether the effect of the interrupted run in already took place; out is the
	// output to record when it did.
	Applied(ctx context.Context, in Input) (applied bool, out map[string]any, err error)
}

type fenceKey struct{}

// WithFence returns ctx carrying fence, which the annealer installs on every run's context.
func WithFence(ctx context.Context, fence func(context.Context) error) context.Context {
	return context.WithValue(ctx, fenceKey{}, fence)
}

// ErrFenced is wrapped by Fence's error: this process no longer leads and must not act.
var ErrFenced = errors.New("fenced: this scheduler lost its leadership; another one owns the run now")

// Fence must be called by an executor right before each external effect (a power action, a boot
// override, a write to the world). It returns nil when the run may act, or an error wrapping
// ErrFenced when the process that claimed the run has lost its leadership — the new leader has
// taken the run over, and acting now would apply the effect twice. Outside the annealer (tests,
// tracked operations) there is no fence and it returns ctx.Err().
func Fence(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if f, ok := ctx.Value(fenceKey{}).(func(context.Context) error); ok && f != nil {
		if err := f(ctx); err != nil {
			return fmt.Errorf("%w: %v", ErrFenced, err)
		}
	}
	return nil
}

// Registry maps executor names to executors.
type Registry struct {
	mu sync.RWMutex
	m  map[string]Executor
}

// NewRegistry returns a registry holding execs.
func NewRegistry(execs ...Executor) *Registry {
	r := &Registry{m: map[string]Executor{}}
	for _, e := range execs {
		r.Register(e)
	}
	return r
}

// Register adds (or replaces) an executor.
func (r *Registry) Register(e Executor) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[e.Name()] = e
}

// Get returns the named executor.
func (r *Registry) Get(name string) (Executor, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.m[name]
	if !ok {
		return nil, fmt.Errorf("no executor named %q (registered: %v)", name, r.namesLocked())
	}
	return e, nil
}

// Names lists the registered executors.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.namesLocked()
}

func (r *Registry) namesLocked() []string {
	out := make([]string, 0, len(r.m))
	for n := range r.m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// OutOfBand is implemented by executors that act on a machine without its operating system —
// through its BMC. Their roles (and roles flagged discovery) also run on machines that are not
// alive yet: powering on or discovering a silent machine is exactly their job.
type OutOfBand interface {
	OutOfBand() bool
}

// OutOfBandNames lists the registered executors that act out of band.
func (r *Registry) OutOfBandNames() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []string
	for n, e := range r.m {
		if o, ok := e.(OutOfBand); ok && o.OutOfBand() {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}
