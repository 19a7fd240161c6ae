package scheduler

import (
	"context"
	"fmt"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/ent/run"
	"github.com/prybar/prybar/scheduler/executor"
	"github.com/prybar/prybar/scheduler/nodestate"
)

// RecoverResult counts what Recover did with node-roles found in TRANSITION.
type RecoverResult struct {
	Requeued []int // idempotent executor, or a Verifier said the effect did not happen
	Applied  []int // a Verifier said the effect happened: ACTIVE with its output
	Failed   []int // not idempotent and not verifiable: ERROR for an operator
}

// Recover handles node-roles left in TRANSITION by a process that died (or lost leadership)
// mid-run. Their RUNNING runs are marked ABANDONED; then, per the executor:
//   - idempotent: re-queued (TODO);
//   - not idempotent but an executor.Verifier: asked whether the interrupted run's effect took
//     place: yes → ACTIVE with the verifier's output (children unblock), no → TODO;
//   - otherwise: ERROR with status "interrupted while running: executor X is not idempotent;
//     inspect and retry" (descendants BLOCKED).
//
// The runner calls it before its first claim in every leadership term. Runs still in flight in
// this process are left alone.
func (a *Annealer) Recover(ctx context.Context) (RecoverResult, error) {
	var res RecoverResult
	byID, _, err := a.roles.get(ctx, a.st.Client, 0)
	if err != nil {
		return res, err
	}
	nrs, err := a.st.Client.NodeRole.Query().Where(noderole.StateEQ(noderole.StateTRANSITION)).All(ctx)
	if err != nil || len(nrs) == 0 {
		return res, err
	}
	ids := make([]int, len(nrs))
	for i, nr := range nrs {
		ids[i] = nr.ID
	}
	lastRun := map[int]*ent.Run{}
	for start := 0; start < len(ids); start += chunk {
		runs, err := a.st.Client.Run.Query().Where(run.NodeRoleIDIn(ids[start:min(start+chunk, len(ids))]...),
			run.StatusEQ(run.StatusRUNNING)).Order(ent.Asc(run.FieldID)).All(ctx)
		if err != nil {
			return res, err
		}
		for _, r := range runs {
			lastRun[r.NodeRoleID] = r
		}
	}
	a.mu.Lock()
	mine := map[int]bool{}
	for _, r := range lastRun {
		// In flight here and claimed in this term: a run this process claimed under an older
		// epoch (leadership lost and won again) is recovered like anyone's — its completion
		// would be refused.
		if a.running[r.ID] && int64(r.LeaderEpoch) == a.epoch {
			mine[r.NodeRoleID] = true
		}
	}
	a.mu.Unlock()

	// Decide outside the transaction: verifiers may talk to hardware.
	type verdict struct {
		kind string // requeue, applied, failed
		out  map[string]any
		msg  string
	}
	verdicts := map[int]verdict{}
	for _, nr := range nrs {
		if mine[nr.ID] {
			continue
		}
		ri := byID[nr.RoleID]
		name := "?"
		var ex executor.Executor
		if ri != nil {
			name = ri.Executor
			ex, _ = a.reg.Get(name)
		}
		switch {
		case ex == nil:
			verdicts[nr.ID] = verdict{kind: "failed", msg: fmt.Sprintf("interrupted while running: executor %s is not registered; inspect and retry", name)}
		case ex.Idempotent():
			verdicts[nr.ID] = verdict{kind: "requeue"}
		default:
			v, ok := ex.(executor.Verifier)
			r := lastRun[nr.ID]
			if !ok || r == nil {
				verdicts[nr.ID] = verdict{kind: "failed", msg: fmt.Sprintf("interrupted while running: executor %s is not idempotent; inspect and retry", name)}
				continue
			}
			vctx, cancel := context.WithTimeout(ctx, ex.Timeout())
			in, err := a.inputFromRun(vctx, r)
			var applied bool
			var out map[string]any
			if err == nil {
				applied, out, err = v.Applied(vctx, in)
			}
			cancel()
			switch {
			case err != nil:
				verdicts[nr.ID] = verdict{kind: "failed", msg: fmt.Sprintf("interrupted while running: executor %s could not verify the interrupted run: %v; inspect and retry", name, err)}
			case applied:
				verdicts[nr.ID] = verdict{kind: "applied", out: out}
			default:
				verdicts[nr.ID] = verdict{kind: "requeue"}
			}
		}
	}
	if len(verdicts) == 0 {
		return res, nil
	}
	a.mu.Lock()
	epoch := a.epoch
	a.mu.Unlock()
	err = a.txEpoch(ctx, &epoch, func(ctx context.Context, tx *ent.Tx) error {
		res = RecoverResult{}
		now := time.Now()
		var runIDs []int
		for id := range verdicts {
			if r := lastRun[id]; r != nil {
				runIDs = append(runIDs, r.ID)
			}
		}
		for start := 0; start < len(runIDs); start += chunk {
			if err := tx.Run.Update().Where(run.IDIn(runIDs[start:min(start+chunk, len(runIDs))]...), run.StatusEQ(run.StatusRUNNING)).
				SetStatus(run.StatusABANDONED).SetFinishedAt(now).
				SetError("abandoned: the scheduler stopped while the run was in flight").Exec(ctx); err != nil {
				return err
			}
		}
		requeue := map[int]nodestate.State{}
		for id, v := range verdicts {
			switch v.kind {
			case "requeue":
				requeue[id] = nodestate.Transition
			case "failed":
				if _, err := transition(ctx, tx, map[int]nodestate.State{id: nodestate.Transition}, nodestate.Recover{Idempotent: false}, false,
					func(u *ent.NodeRoleUpdate) { u.SetStatus(v.msg) }); err != nil {
					return err
				}
				res.Failed = append(res.Failed, id)
			case "applied":
				w := v.out
				if w == nil {
					w = map[string]any{}
				}
				if _, err := transition(ctx, tx, map[int]nodestate.State{id: nodestate.Transition}, nodestate.Succeed{}, false,
					func(u *ent.NodeRoleUpdate) {
						u.AddRunCount(1).SetAttempts(0).SetWall(w).SetStatus("ok (verified after an interrupted run)")
					}); err != nil {
					return err
				}
				res.Applied = append(res.Applied, id)
			}
		}
		if _, err := transition(ctx, tx, requeue, nodestate.Recover{Idempotent: true}, false, func(u *ent.NodeRoleUpdate) {
			u.SetStatus("re-queued after an interrupted run")
		}); err != nil {
			return err
		}
		for id := range requeue {
			res.Requeued = append(res.Requeued, id)
		}
		if len(res.Failed) > 0 {
			if _, err := blockDescendants(ctx, tx, res.Failed, nodestate.ParentFailed{}); err != nil {
				return err
			}
		}
		if len(res.Applied) > 0 {
			if _, err := unblockChildren(ctx, tx, res.Applied); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return RecoverResult{}, err
	}
	sortInts(res.Requeued)
	sortInts(res.Applied)
	sortInts(res.Failed)
	a.stats.recovered.Add(int64(len(verdicts)))
	a.log.Info("annealer: recovered interrupted runs", "requeued", len(res.Requeued), "applied", len(res.Applied), "failed", len(res.Failed))
	return res, nil
}
