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
	"github.com/prybar/prybar/scheduler/leader"
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
	// inst is this server's liveness lock on PostgreSQL (nil on SQLite): operations are stamped
	// with its number (owner_epoch), and any server settles those whose owner lost its lock.
	inst *leader.Instance

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
	base, cancel := context.WithCancel(context.Background())
	return &Runner{st: st, exec: exec, log: log, owner: DefaultOwner(), base: base, shutdown: cancel}
}

// DefaultOwner names this process on the operations it runs (host/pid).
func DefaultOwner() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d", host, os.Getpid())
}

// SetInstance makes the runner stamp operations with inst's number and settle other instances'
// operations by liveness (see Recover). Call it before Start.
func (r *Runner) SetInstance(inst *leader.Instance) {
	r.inst = inst
	r.owner = fmt.Sprintf("%s#%d", inst.Name(), inst.ID())
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
// With an instance (PostgreSQL, SetInstance) an operation's owner is dead when its owner epoch's
// liveness lock is no longer held: those are settled at once, whatever their age, by whichever
// server looks first (at start-up and then every few seconds, see Watch); a live owner's
// operation is never touched, however slow. The owners are read before the locks, and numbers
// are never reused, so an instance that starts meanwhile cannot be mistaken for a dead one.
//
// Operations without an owner epoch (SQLite, or written by an older server) fall back to sole:
// sole says this process is the only server that could be running operations (SQLite: one server
// per database), so every other owner's operation is dead and settled at once. Without sole only
// those older than twice the executor's timeout are settled.
func (r *Runner) Recover(ctx context.Context, sole bool) (int, error) {
	var n int
	err := r.st.Tx(events.WithActor(ctx, "operations"), func(ctx context.Context, tx *ent.Tx) error {
		n = 0
		now := time.Now()
		const msg = "abandoned: the server running it stopped; check the machine before retrying"
		if r.inst != nil && r.st.Dialect == "postgres" {
			dead, err := deadOwners(ctx, tx, r.inst.ID())
			if err != nil {
				return err
			}
			if len(dead) > 0 {
				k, err := tx.Operation.Update().Where(operation.StateIn(operation.StatePENDING, operation.StateRUNNING),
					operation.OwnerEpochIn(dead...)).
					SetState(operation.StateABANDONED).SetFinishedAt(now).SetMessage(msg).Save(ctx)
				if err != nil {
					return err
				}
				n += k
			}
		}
		u := tx.Operation.Update().Where(operation.StateIn(operation.StatePENDING, operation.StateRUNNING),
			operation.OwnerEpochIsNil(), operation.Or(operation.OwnerNEQ(r.owner), operation.OwnerIsNil()))
		if !sole {
			u.Where(operation.CreatedAtLT(now.Add(-2 * r.exec.Timeout())))
		}
		k, err := u.SetState(operation.StateABANDONED).SetFinishedAt(now).SetMessage(msg).Save(ctx)
		n += k
		return err
	})
	return n, err
}

// deadOwners returns the owner epochs of unfinished operations whose instance no longer holds its
// liveness lock (never mine).
func deadOwners(ctx context.Context, tx *ent.Tx, mine int64) ([]int, error) {
	var owners []struct {
		OwnerEpoch int `json:"owner_epoch"`
	}
	if err := tx.Operation.Query().Where(operation.StateIn(operation.StatePENDING, operation.StateRUNNING),
		operation.OwnerEpochNotNil(), operation.OwnerEpochNEQ(int(mine))).
		GroupBy(operation.FieldOwnerEpoch).Scan(ctx, &owners); err != nil || len(owners) == 0 {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, leader.LiveInstancesQuery, int64(leader.InstanceClass))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	live := map[int]bool{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		live[int(id)] = true
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var dead []int
	for _, o := range owners {
		if !live[o.OwnerEpoch] {
			dead = append(dead, o.OwnerEpoch)
		}
	}
	return dead, nil
}

// Watch settles dead owners' operations every interval until ctx ends (PostgreSQL with an
// instance; otherwise it returns at once): a replica that crashed is noticed by the survivors
// without a restart.
func (r *Runner) Watch(ctx context.Context, every time.Duration) {
	if r.inst == nil || r.st.Dialect != "postgres" {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := r.Recover(ctx, false); err != nil && ctx.Err() == nil {
			r.log.Warn("operations: settling those of dead servers", "err", err)
		} else if n > 0 {
			r.log.Warn("operations of a server that stopped marked ABANDONED", "count", n)
		}
	}
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
		c := tx.Operation.Create().SetMachineID(m.ID).SetAction(action).SetParams(params).SetOwner(r.owner).
			SetMessage("queued")
		if r.inst != nil {
			c.SetOwnerEpoch(int(r.inst.ID()))
		}
		op, err = c.Save(ctx)
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

// update records progress of an operation that is still unfinished: once another server has
// settled it (this instance lost its liveness lock), nothing is written over that.
func (r *Runner) update(ctx context.Context, id int, fn func(*ent.OperationUpdateOne)) {
	err := r.st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		u := tx.Operation.UpdateOneID(id).Where(operation.StateIn(operation.StatePENDING, operation.StateRUNNING))
		fn(u)
		return u.Exec(ctx)
	})
	if ent.IsNotFound(err) {
		r.log.Warn("operation: already settled by another server; not recorded", "operation", id)
		return
	}
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
	if r.inst != nil {
		// The fence of an operation: before each effect the executor checks that this server
		// still holds its liveness lock — once it does not, another server may have settled the
		// operation, and the operator may have started another.
		runCtx = executor.WithFence(runCtx, r.inst.Check)
	}
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
