// Package operation runs an operator's ad-hoc actions on one machine — power on/off/cycle, set the
// boot device — outside the role graph, as tracked Operation records: PENDING → RUNNING →
// SUCCEEDED | FAILED (or ABANDONED when the server died mid-way). Each state change is written
// through the event outbox, so API clients follow progress on the events subscription. The work
// itself is done by the executor that serves the bmc roles, so ad-hoc actions and annealed ones
// share its one-operation-per-BMC lock and its post-condition checks.
package operation

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/bmc"
	"github.com/prybar/prybar/ent/operation"
	"github.com/prybar/prybar/internal/domain"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/internal/store"
	oobbmc "github.com/prybar/prybar/provision/bmc"
	"github.com/prybar/prybar/scheduler/executor"
)

// Actions are the operations an operator may start, mapped to the executor's action attribute.
var Actions = map[string]string{
	"power-on":    "power-on",
	"power-off":   "power-off",
	"power-soft":  "power-soft",
	"power-cycle": "power-cycle",
	"boot-device": "boot-device",
}

// Runner starts and runs operations.
type Runner struct {
	st    *store.Store
	exec  executor.Executor
	log   *slog.Logger
	owner string
	wg    sync.WaitGroup

	// base is the parent of every operation's context; Shutdown cancels it so operations in
	// flight stop at once (a dead BMC must not hold a stopping server for the settle timeout).
	base     context.Context
	shutdown context.CancelFunc
}

// New returns a runner that performs operations with exec (the "bmc" executor).
func New(st *store.Store, exec executor.Executor, log *slog.Logger) *Runner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host, _ := os.Hostname()
	base, cancel := context.WithCancel(context.Background())
	return &Runner{st: st, exec: exec, log: log, owner: fmt.Sprintf("%s/%d", host, os.Getpid()), base: base, shutdown: cancel}
}

// Shutdown cancels the operations in flight, waits until each has recorded its end (ABANDONED
// with the reason "cancelled: the server shut down …"), and returns. The executor returns
// promptly on cancellation, so this takes about one BMC request, not the settle timeout.
func (r *Runner) Shutdown() {
	r.shutdown()
	r.wg.Wait()
}

// Recover settles operations left PENDING or RUNNING by a server that stopped: they become
// ABANDONED, because whether their effect happened is unknown and they are not re-run behind the
// operator's back. Operations owned by this process are never touched.
//
// sole says this process is the only server that could be running operations (SQLite: one
// server per database; PostgreSQL: the caller holds the scheduler's leadership and replicas do not
// run operations without it). Then every other owner's operation is dead and settled at once,
// whatever its age — a quick restart no longer leaves them RUNNING for minutes. Without sole (a
// replica that may share the database with live servers) only those older than twice the
// executor's timeout are settled.
func (r *Runner) Recover(ctx context.Context, sole bool) (int, error) {
	var n int
	err := r.st.Tx(events.WithActor(ctx, "operations"), func(ctx context.Context, tx *ent.Tx) error {
		u := tx.Operation.Update().
			Where(operation.StateIn(operation.StatePENDING, operation.StateRUNNING), operation.Or(operation.OwnerNEQ(r.owner), operation.OwnerIsNil()))
		if !sole {
			u.Where(operation.CreatedAtLT(time.Now().Add(-2 * r.exec.Timeout())))
		}
		var err error
		n, err = u.SetState(operation.StateABANDONED).SetFinishedAt(time.Now()).
			SetMessage("abandoned: the server running it stopped; check the machine before retrying").
			Save(ctx)
		return err
	})
	return n, err
}

// Wait blocks until every started operation has finished.
func (r *Runner) Wait() { r.wg.Wait() }

// Start implements graph.Operations: it validates, records the operation and runs it in the
// background. The returned operation is PENDING.
func (r *Runner) Start(ctx context.Context, machineID int, action string, params map[string]any) (*ent.Operation, error) {
	execAction, ok := Actions[action]
	if !ok {
		return nil, domain.Errorf("action", domain.Invalid, "unknown operation %q", action)
	}
	var op *ent.Operation
	err := r.st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		m, err := tx.Machine.Get(ctx, machineID)
		if ent.IsNotFound(err) {
			return domain.Errorf("machineID", domain.NotFound, "machine %d does not exist", machineID)
		} else if err != nil {
			return err
		}
		if ok, err := tx.BMC.Query().Where(bmc.MachineID(m.ID)).Exist(ctx); err != nil {
			return err
		} else if !ok {
			return domain.Errorf("machineID", domain.Conflict, "machine %s has no BMC", m.Name)
		}
		op, err = tx.Operation.Create().SetMachineID(m.ID).SetAction(action).SetParams(params).SetOwner(r.owner).
			SetMessage("queued").Save(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		// The request that started it ends now; the operation must not — only Shutdown ends it.
		r.run(events.WithActor(r.base, events.Actor(ctx)), op.ID, execAction, params)
	}()
	return op, nil
}

func (r *Runner) update(ctx context.Context, id int, fn func(*ent.OperationUpdateOne)) {
	err := r.st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		u := tx.Operation.UpdateOneID(id)
		fn(u)
		return u.Exec(ctx)
	})
	if err != nil {
		r.log.Error("operation: record progress", "operation", id, "err", err)
	}
}

func (r *Runner) run(ctx context.Context, id int, action string, params map[string]any) {
	in, err := r.input(ctx, id, action, params)
	if err != nil {
		r.update(ctx, id, func(u *ent.OperationUpdateOne) {
			u.SetState(operation.StateFAILED).SetMessage(err.Error()).SetFinishedAt(time.Now())
		})
		return
	}
	r.update(ctx, id, func(u *ent.OperationUpdateOne) {
		u.SetState(operation.StateRUNNING).SetStartedAt(time.Now()).SetMessage("running " + action)
	})
	runCtx, cancel := context.WithTimeout(ctx, r.exec.Timeout())
	res, err := r.exec.Run(runCtx, in)
	cancel()
	cancelled := ctx.Err() != nil
	// Record with a context that survives Shutdown: the end must be written.
	ctx = context.WithoutCancel(ctx)
	r.update(ctx, id, func(u *ent.OperationUpdateOne) {
		u.SetFinishedAt(time.Now()).SetLog(res.Log).SetResult(res.Output)
		if cancelled {
			u.SetState(operation.StateABANDONED).SetMessage(fmt.Sprintf("cancelled: the server shut down while %s was in progress (%v); check the machine before retrying", action, err))
		} else if err != nil {
			u.SetState(operation.StateFAILED).SetMessage(err.Error())
		} else {
			u.SetState(operation.StateSUCCEEDED).SetMessage(action + " done")
		}
	})
	r.log.Info("operation finished", "operation", id, "action", action, "err", err)
}

// input builds the executor input from the machine and its BMC as they are now.
func (r *Runner) input(ctx context.Context, id int, action string, params map[string]any) (executor.Input, error) {
	op, err := r.st.Client.Operation.Query().Where(operation.ID(id)).WithMachine(func(q *ent.MachineQuery) { q.WithBmc() }).Only(ctx)
	if err != nil {
		return executor.Input{}, err
	}
	m := op.Edges.Machine
	b := m.Edges.Bmc
	if b == nil {
		return executor.Input{}, fmt.Errorf("machine %s has no BMC", m.Name)
	}
	attrs := map[string]any{"action": action}
	for k, v := range params {
		attrs[k] = v
	}
	if action == "boot-device" {
		// A bare boot-device operation only sets the override; it does not reboot.
		attrs["boot"] = false
	}
	ep, err := oobbmc.FromRecord(b, r.st.SecretKey)
	if err != nil {
		return executor.Input{}, err
	}
	return executor.Input{
		NodeRoleID: 0, Attempt: 1, Role: "operation:" + op.Action, Attrs: attrs,
		Machine: executor.Machine{ID: m.ID, Name: m.Name, BMC: &ep},
	}, nil
}
