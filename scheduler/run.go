package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"time"

	"entgo.io/ent/dialect/sql"
	"github.com/go-co-op/gocron/v2"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/bmc"
	"github.com/prybar/prybar/ent/deployment"
	"github.com/prybar/prybar/ent/machine"
	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/ent/predicate"
	"github.com/prybar/prybar/ent/role"
	"github.com/prybar/prybar/ent/run"
	"github.com/prybar/prybar/internal/events"
	oobbmc "github.com/prybar/prybar/provision/bmc"
	"github.com/prybar/prybar/scheduler/executor"
	"github.com/prybar/prybar/scheduler/leader"
	"github.com/prybar/prybar/scheduler/nodestate"
)

// job is one claimed run on its way through an executor.
type job struct {
	nrID, runID int
	exec        executor.Executor
	execName    string
	execErr     error // no such executor: the run fails at once
	in          executor.Input
	key         string
	timeout     time.Duration
	policy      nodestate.RetryPolicy
	attempts    int   // failed attempts before this run
	epoch       int64 // leader epoch the run was claimed under
}

// result is a finished job.
type result struct {
	job      *job
	res      executor.Result
	err      error
	finished time.Time
}

func defaultOwner() string {
	h, _ := os.Hostname()
	return fmt.Sprintf("%s-%d-%04x", h, os.Getpid(), rand.IntN(1<<16))
}

// Start runs the annealer in the background until ctx ends or Stop is called: a gocron job
// sweeps every Options.Sweep (gated by the elector, so only the leader sweeps), the claim loop
// claims work whenever it is woken, and the committer records finished runs in batches.
func (a *Annealer) Start(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.started {
		return errors.New("scheduler: already started")
	}
	ctx = events.WithActor(ctx, "scheduler")
	if _, err := a.EnsureSystem(ctx); err != nil {
		return err
	}
	var sopts []gocron.SchedulerOption
	if a.opts.Elector != nil {
		sopts = append(sopts, gocron.WithDistributedElector(a.opts.Elector))
	}
	s, err := gocron.NewScheduler(sopts...)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	// Runs get their own context: stopping waits a little for them before cancelling, so a
	// graceful stop does not turn every run in flight into a failure.
	runCtx, cancelRuns := context.WithCancel(context.WithoutCancel(ctx))
	_, err = s.NewJob(gocron.DurationJob(a.opts.Sweep), gocron.NewTask(func() {
		a.lastTick.Store(time.Now().UnixNano())
		a.Wake()
	}), gocron.WithSingletonMode(gocron.LimitModeReschedule), gocron.WithStartAt(gocron.WithStartImmediately()))
	if err != nil {
		cancel()
		cancelRuns()
		return err
	}
	a.sched = s
	a.cancel = func() {
		cancel()
		if r, ok := a.opts.Elector.(interface{ Resign() }); ok {
			// Several servers: release leadership first and cancel the runs — a follower takes
			// over at its next sweep and recovers them, instead of waiting for this one to drain
			// (a run polling a slow BMC held the whole fleet's annealing for a minute). The
			// runs' fence fails from now on, so none of them acts or records behind the
			// follower's back.
			r.Resign()
			cancelRuns()
			return
		}
		a.runsIdle(5 * time.Second)
		cancelRuns()
	}
	a.started = true
	s.Start()
	a.wg.Add(2)
	go func() { defer a.wg.Done(); a.claimLoop(ctx, runCtx) }()
	go func() { defer a.wg.Done(); a.committer(ctx) }()
	return nil
}

// Stop stops sweeping and claiming, gives runs in flight a few seconds to finish and be recorded,
// then cancels the rest (they stay in TRANSITION and are recovered at the next start).
func (a *Annealer) Stop() {
	a.mu.Lock()
	if !a.started {
		a.mu.Unlock()
		a.wg.Wait() // a concurrent Stop may still be draining
		return
	}
	a.started = false
	s, cancel := a.sched, a.cancel
	a.mu.Unlock()
	_ = s.Shutdown()
	cancel()
	a.wg.Wait()
	a.leading.Store(false)
}

// Resign gives up the leadership at once, for good, and cancels the runs of the current term (they
// stay in TRANSITION for the next leader's recovery). A stopping server calls it as soon as it is
// told to stop, before it drains HTTP and operations, so a follower takes over at its next sweep.
// Without an elector that can resign (SQLite: one server) it does nothing; Stop drains as before.
func (a *Annealer) Resign() {
	r, ok := a.opts.Elector.(interface{ Resign() })
	if !ok {
		return
	}
	r.Resign()
	a.leading.Store(false)
	a.mu.Lock()
	if a.termCancel != nil {
		a.termCancel()
		a.termCtx, a.termCancel = nil, nil
	}
	a.mu.Unlock()
}

// runsIdle waits until no run is in flight, or d passes.
func (a *Annealer) runsIdle(d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		a.mu.Lock()
		n := a.inflight
		a.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// isLeader asks the elector; without one this process always leads.
func (a *Annealer) isLeader(ctx context.Context) (bool, uint64, int64) {
	if a.opts.Elector == nil {
		return true, 1, 0
	}
	if err := a.opts.Elector.IsLeader(ctx); err != nil {
		return false, 0, 0
	}
	var epoch int64
	if e, ok := a.opts.Elector.(epochElector); ok {
		epoch = e.Epoch()
	}
	if t, ok := a.opts.Elector.(interface{ Term() uint64 }); ok {
		return true, t.Term(), epoch
	}
	return true, 1, epoch
}

// epochElector is an elector with a leader epoch kept in the database (leader.Elector).
type epochElector interface {
	Epoch() int64
	Key() int64
}

// errStaleEpoch: the database holds a newer leader epoch than the one a write was made under.
var errStaleEpoch = errors.New("scheduler: a newer leader epoch exists")

// currentEpoch reads the leader epoch inside tx and share-locks it until tx ends (PostgreSQL with
// an epoch elector; otherwise it returns want): a new leader's bump of the epoch waits for this
// transaction, so what tx writes is either ordered before the new leader's recovery, or — when
// the bump came first — refused by the caller because the epoch differs.
func (a *Annealer) currentEpoch(ctx context.Context, tx *ent.Tx, want int64) (int64, error) {
	e, ok := a.opts.Elector.(epochElector)
	if !ok || a.st.Dialect != "postgres" {
		return want, nil
	}
	rows, err := tx.QueryContext(ctx, leader.EpochForShare, e.Key())
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var cur int64
	if rows.Next() {
		if err := rows.Scan(&cur); err != nil {
			return 0, err
		}
	}
	return cur, rows.Err()
}

func (a *Annealer) claimLoop(ctx, runCtx context.Context) {
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.wake:
		}
		// Coalesce wakes: every finished batch wakes the loop, and a claim costs a candidate query
		// whatever its size, so claiming at most every ClaimEvery keeps batches large.
		if d := time.Since(last); d < a.opts.ClaimEvery {
			select {
			case <-ctx.Done():
				return
			case <-time.After(a.opts.ClaimEvery - d):
			}
		}
		last = time.Now()
		ok, term, epoch := a.isLeader(ctx)
		a.leading.Store(ok)
		a.mu.Lock()
		if a.termCancel != nil && (!ok || term != a.term) {
			// Leadership lost (or lost and won again): the runs of the old term are another
			// leader's business now. Cancel them; recovery decides their fate.
			a.termCancel()
			a.termCtx, a.termCancel = nil, nil
		}
		if ok && a.termCtx == nil {
			a.term, a.epoch = term, epoch
			a.termCtx, a.termCancel = context.WithCancel(executor.WithFence(runCtx, a.fence))
		}
		termCtx := a.termCtx
		a.mu.Unlock()
		if !ok {
			continue
		}
		if a.recovered.Load() != term {
			if _, err := a.Recover(ctx); err != nil {
				a.log.Error("annealer: recovery failed; will retry", "err", err)
				continue
			}
			a.recovered.Store(term)
		}
		if err := a.retryDue(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, errStaleEpoch) {
			a.log.Warn("annealer: automatic retries", "err", err)
		}
		for ctx.Err() == nil {
			n, err := a.claim(ctx, termCtx)
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, errLostRace) && !errors.Is(err, errStaleEpoch) {
					a.log.Error("annealer: claim", "err", err)
				}
				break
			}
			if n == 0 {
				break
			}
		}
	}
}

// fence returns nil when this process may act for its runs: it still holds the leadership. With
// an elector that can check its lock on the spot (leader.Elector.Check) the check is a round trip
// to PostgreSQL, made right before each external effect and each completion; without an elector
// (SQLite, one server) there is nothing to fence.
func (a *Annealer) fence(ctx context.Context) error {
	if a.opts.Elector == nil {
		return nil
	}
	if c, ok := a.opts.Elector.(interface{ Check(context.Context) error }); ok {
		err := c.Check(ctx)
		if err != nil {
			// Lost: cancel the term's runs now rather than at the claim loop's next round, so
			// runs waiting on a BMC stop too.
			a.mu.Lock()
			if a.termCancel != nil {
				a.termCancel()
				a.termCtx, a.termCancel = nil, nil
			}
			a.mu.Unlock()
		}
		return err
	}
	return nil
}

// errFenced: a batch of results was not recorded because this process lost its leadership.
var errFenced = errors.New("scheduler: leadership lost; results left to the new leader's recovery")

// retryDue re-queues node-roles whose automatic retry is due.
func (a *Annealer) retryDue(ctx context.Context) error {
	now := time.Now()
	ids, err := a.st.Client.NodeRole.Query().Where(noderole.StateEQ(noderole.StateERROR),
		noderole.NextAttemptAtNotNil(), noderole.NextAttemptAtLTE(now)).IDs(ctx)
	if err != nil || len(ids) == 0 {
		return err
	}
	a.mu.Lock()
	epoch := a.epoch
	a.mu.Unlock()
	return a.txEpoch(ctx, &epoch, func(ctx context.Context, tx *ent.Tx) error {
		ids, err := tx.NodeRole.Query().Where(noderole.StateEQ(noderole.StateERROR),
			noderole.NextAttemptAtNotNil(), noderole.NextAttemptAtLTE(now)).IDs(ctx)
		if err != nil {
			return err
		}
		cur := map[int]nodestate.State{}
		for _, id := range ids {
			cur[id] = nodestate.Error
		}
		return retry(ctx, tx, cur, false, "automatic retry")
	})
}

// machineIdle keeps node-roles whose machine has no node-role in TRANSITION: one run per machine.
func machineIdle() predicate.NodeRole {
	return func(s *sql.Selector) {
		t := sql.Table(noderole.Table).As("busy")
		s.Where(sql.NotExists(sql.Select(t.C(noderole.FieldID)).From(t).Where(sql.And(
			sql.ColumnsEQ(t.C(noderole.FieldMachineID), s.C(noderole.FieldMachineID)),
			sql.EQ(t.C(noderole.FieldState), string(noderole.StateTRANSITION)),
		))))
	}
}

// claim starts up to one batch of runs and returns how many it started.
func (a *Annealer) claim(ctx, runCtx context.Context) (int, error) {
	a.mu.Lock()
	epoch := a.epoch
	capacity := min(a.opts.Concurrency-a.inflight, a.opts.BatchSize)
	keyBusy := make(map[string]int, len(a.keyBusy))
	for k, v := range a.keyBusy {
		keyBusy[k] = v
	}
	a.mu.Unlock()
	if capacity <= 0 {
		return 0, nil
	}
	byID, _, err := a.roles.get(ctx, a.st.Client, time.Second)
	if err != nil {
		return 0, err
	}
	var jobs []*job
	// A leader deposed since its last check claims nothing (txEpoch): the new leader's recovery
	// would not see runs claimed after it.
	err = a.txEpoch(ctx, &epoch, func(ctx context.Context, tx *ent.Tx) error {
		jobs = nil
		now := time.Now()
		cands, err := tx.NodeRole.Query().Where(
			noderole.StateEQ(noderole.StateTODO),
			noderole.Or(noderole.NextAttemptAtIsNil(), noderole.NextAttemptAtLTE(now)),
			noderole.HasDeploymentWith(deployment.StateEQ(deployment.StateCOMMITTED)),
			noderole.HasMachineWith(machine.Available(true)),
			// A machine must be alive, except for discovery roles and out-of-band executors,
			// whose job is to reach a machine that does not answer yet.
			noderole.Or(
				noderole.HasMachineWith(machine.Alive(true)),
				noderole.HasRoleWith(role.Or(role.Discovery(true), role.ExecutorIn(a.reg.OutOfBandNames()...))),
			),
			machineIdle(),
		).Order(ent.Asc(noderole.FieldCohort), ent.Asc(noderole.FieldID)).Limit(capacity*2 + 16).All(ctx)
		if err != nil || len(cands) == 0 {
			return err
		}
		// One run per machine: the first (cohort, id) of each machine wins.
		seen := map[int]bool{}
		var picked []*ent.NodeRole
		depIDs, machIDs := map[int]bool{}, map[int]bool{}
		for _, c := range cands {
			if seen[c.MachineID] {
				continue
			}
			seen[c.MachineID] = true
			picked = append(picked, c)
			depIDs[c.DeploymentID], machIDs[c.MachineID] = true, true
		}
		deps, err := tx.Deployment.Query().Where(deployment.IDIn(keys(depIDs)...)).All(ctx)
		if err != nil {
			return err
		}
		depByID := map[int]*ent.Deployment{}
		for _, d := range deps {
			depByID[d.ID] = d
		}
		machines, bmcErrs, err := a.machineInfo(ctx, tx, keys(machIDs))
		if err != nil {
			return err
		}
		cur := map[int]nodestate.State{}
		for _, c := range picked {
			if len(jobs) >= capacity {
				break
			}
			ri := byID[c.RoleID]
			if ri == nil {
				continue // a role loaded a moment ago; the next sweep sees it
			}
			attrs := layer(ri.Defaults, sub(depByID[c.DeploymentID].RoleData, ri.Name), c.CommittedData, c.SystemData, c.Wall)
			inj, err := a.injected(ctx, tx, c.ID, ri.wants, byID)
			if err != nil {
				return err
			}
			j := &job{nrID: c.ID, attempts: c.Attempts, policy: retryPolicy(ri.Role), execName: ri.Executor, epoch: epoch}
			j.in = executor.Input{NodeRoleID: c.ID, Attempt: c.Attempts + 1, Machine: machines[c.MachineID],
				Role: ri.Name, Attrs: attrs, Injected: inj}
			j.exec, j.execErr = a.reg.Get(ri.Executor)
			if oob, ok := j.exec.(executor.OutOfBand); ok && oob.OutOfBand() && j.execErr == nil {
				j.execErr = bmcErrs[c.MachineID]
			}
			if j.exec != nil {
				j.key = j.exec.ConcurrencyKey(j.in)
				if j.key != "" && keyBusy[j.key] >= a.opts.PerKeyLimit {
					continue
				}
				keyBusy[j.key]++
				j.timeout = j.exec.Timeout()
			}
			if ri.TimeoutMs > 0 {
				j.timeout = time.Duration(ri.TimeoutMs) * time.Millisecond
			}
			if j.timeout <= 0 {
				j.timeout = a.opts.DefaultTimeout
			}
			jobs = append(jobs, j)
			cur[c.ID] = nodestate.Todo
		}
		if len(jobs) == 0 {
			return nil
		}
		// The compare-and-swap: TODO → TRANSITION for exactly these rows, or nothing.
		if _, err := transition(ctx, tx, cur, nodestate.Start{}, false, func(u *ent.NodeRoleUpdate) {
			u.SetStatus("running")
		}); err != nil {
			return err
		}
		for start := 0; start < len(jobs); start += 500 {
			part := jobs[start:min(start+500, len(jobs))]
			builders := make([]*ent.RunCreate, len(part))
			for i, j := range part {
				builders[i] = tx.Run.Create().SetNodeRoleID(j.nrID).SetExecutor(j.execName).SetAttempt(j.in.Attempt).
					SetOwner(a.opts.Owner).SetLeaderEpoch(int(epoch)).SetStartedAt(now).SetInput(snapshot(j.in))
			}
			runs, err := tx.Run.CreateBulk(builders...).Save(ctx)
			if err != nil {
				return err
			}
			for i, r := range runs {
				part[i].runID, part[i].in.RunID = r.ID, r.ID
			}
		}
		return nil
	})
	if err != nil || len(jobs) == 0 {
		return 0, err
	}
	a.mu.Lock()
	a.inflight += len(jobs)
	for _, j := range jobs {
		if j.key != "" {
			a.keyBusy[j.key]++
		}
		a.running[j.runID] = true
	}
	a.mu.Unlock()
	a.stats.claimed.Add(int64(len(jobs)))
	for _, j := range jobs {
		go a.execute(runCtx, j)
	}
	return len(jobs), nil
}

// snapshot is the input recorded on the Run.
func snapshot(in executor.Input) map[string]any {
	return map[string]any{
		"node_role_id": in.NodeRoleID, "attempt": in.Attempt, "role": in.Role,
		"machine": map[string]any{"id": in.Machine.ID, "name": in.Machine.Name},
		"attrs":   in.Attrs, "injected": in.Injected,
	}
}

// inputFromRun rebuilds an executor input from a recorded run (for Verifier after a crash). The
// snapshot holds no secrets, so the machine — and with it the BMC and its opened password — is
// read from the database as it is now: a verifier asking a BMC whether an interrupted power-on
// happened needs the same endpoint the run had. A BMC password that cannot be opened is returned
// as an error for that run only.
func (a *Annealer) inputFromRun(ctx context.Context, r *ent.Run) (executor.Input, error) {
	in := executor.Input{RunID: r.ID, NodeRoleID: r.NodeRoleID, Attempt: r.Attempt}
	if s, ok := r.Input["role"].(string); ok {
		in.Role = s
	}
	if m, ok := r.Input["machine"].(map[string]any); ok {
		if id, ok := m["id"].(float64); ok {
			in.Machine.ID = int(id)
		}
		in.Machine.Name, _ = m["name"].(string)
	}
	in.Attrs, _ = r.Input["attrs"].(map[string]any)
	in.Injected, _ = r.Input["injected"].(map[string]any)
	if in.Machine.ID == 0 {
		nr, err := a.st.Client.NodeRole.Get(ctx, r.NodeRoleID)
		if err != nil {
			return in, err
		}
		in.Machine.ID = nr.MachineID
	}
	var machines map[int]executor.Machine
	var bmcErrs map[int]error
	err := a.tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		var err error
		machines, bmcErrs, err = a.machineInfo(ctx, tx, []int{in.Machine.ID})
		return err
	})
	if err != nil {
		return in, err
	}
	if m, ok := machines[in.Machine.ID]; ok {
		in.Machine = m
	}
	return in, bmcErrs[in.Machine.ID]
}

// machineInfo copies what executors need of each machine.
//
// A BMC password that cannot be opened (wrong key, tampered value) is reported per machine in
// bmcErrs rather than failing the whole claim: one bad record must not stall every other machine,
// and executors that do not use the BMC do not care.
func (a *Annealer) machineInfo(ctx context.Context, tx *ent.Tx, ids []int) (out map[int]executor.Machine, bmcErrs map[int]error, err error) {
	out, bmcErrs = map[int]executor.Machine{}, map[int]error{}
	for start := 0; start < len(ids); start += chunk {
		part := ids[start:min(start+chunk, len(ids))]
		var ms []struct {
			ID   int    `json:"id"`
			Name string `json:"name"`
		}
		if err := tx.Machine.Query().Where(machine.IDIn(part...)).Select(machine.FieldID, machine.FieldName).Scan(ctx, &ms); err != nil {
			return nil, nil, err
		}
		for _, m := range ms {
			out[m.ID] = executor.Machine{ID: m.ID, Name: m.Name}
		}
		bmcs, err := tx.BMC.Query().Where(bmc.MachineIDIn(part...)).All(ctx)
		if err != nil {
			return nil, nil, err
		}
		for _, b := range bmcs {
			ep, err := oobbmc.FromRecord(b, a.st.SecretKey)
			if err != nil {
				bmcErrs[b.MachineID] = err
				ep.Password = ""
			}
			m := out[b.MachineID]
			m.BMC = &ep
			out[b.MachineID] = m
		}
	}
	return out, bmcErrs, nil
}

// execute runs one job under its timeout and hands the result to the committer.
func (a *Annealer) execute(ctx context.Context, j *job) {
	r := result{job: j}
	if j.execErr != nil {
		r.err = j.execErr
	} else {
		rctx, cancel := context.WithTimeout(ctx, j.timeout)
		func() {
			defer func() {
				if p := recover(); p != nil {
					r.err = fmt.Errorf("executor %s panicked: %v", j.exec.Name(), p)
				}
			}()
			r.res, r.err = j.exec.Run(rctx, j.in)
		}()
		if r.err != nil && errors.Is(rctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			r.err = fmt.Errorf("timed out after %s: %w", j.timeout, r.err)
		}
		cancel()
	}
	r.finished = time.Now()
	if ctx.Err() != nil {
		// Shutting down: leave the node-role in TRANSITION for recovery rather than record a
		// failure the executor did not cause.
		a.release([]*job{j})
		return
	}
	a.results <- r
}

// release forgets jobs in flight.
func (a *Annealer) release(jobs []*job) {
	a.mu.Lock()
	for _, j := range jobs {
		a.inflight--
		if j.key != "" {
			if a.keyBusy[j.key]--; a.keyBusy[j.key] <= 0 {
				delete(a.keyBusy, j.key)
			}
		}
		delete(a.running, j.runID)
	}
	a.mu.Unlock()
}

// committer records finished runs: it gathers results for up to FlushEvery (or a batch) and
// writes them in one transaction, so a thousand quick runs cost a handful of statements.
func (a *Annealer) committer(ctx context.Context) {
	for {
		var batch []result
		select {
		case r := <-a.results:
			batch = append(batch, r)
		case <-ctx.Done():
			// Drain what finished during the grace period of Stop.
			for a.drainOnce() {
			}
			return
		}
		timer := time.NewTimer(a.opts.FlushEvery)
	gather:
		for len(batch) < a.opts.BatchSize {
			select {
			case r := <-a.results:
				batch = append(batch, r)
			case <-timer.C:
				break gather
			}
		}
		timer.Stop()
		a.record(context.WithoutCancel(ctx), batch)
	}
}

// drainOnce records whatever results are waiting (or arrive within the grace period of Stop).
func (a *Annealer) drainOnce() bool {
	a.mu.Lock()
	n := a.inflight
	a.mu.Unlock()
	if n == 0 {
		return false
	}
	var batch []result
	timeout := time.NewTimer(6 * time.Second)
	defer timeout.Stop()
	select {
	case r := <-a.results:
		batch = append(batch, r)
	case <-timeout.C:
		return false
	}
	for len(batch) < a.opts.BatchSize {
		select {
		case r := <-a.results:
			batch = append(batch, r)
			continue
		default:
		}
		break
	}
	a.record(events.WithActor(context.Background(), "scheduler"), batch)
	return true
}

// record writes a batch with retries (a busy database must not lose results), then frees the
// machines and wakes the claim loop.
func (a *Annealer) record(ctx context.Context, batch []result) {
	jobs := make([]*job, len(batch))
	for i, r := range batch {
		jobs[i] = r.job
	}
	defer func() {
		a.release(jobs)
		a.Wake()
	}()
	// Runs whose executor writes records (executor.Committer) are completed one per transaction:
	// a record that cannot be written fails that run alone, not the whole batch.
	var plain []result
	for _, r := range batch {
		if _, ok := r.job.exec.(executor.Committer); ok && r.err == nil {
			a.recordOne(ctx, r)
			continue
		}
		plain = append(plain, r)
	}
	if len(plain) == 0 {
		return
	}
	a.recordBatch(ctx, plain)
}

// commitError is an executor's Commit failing: the run fails instead of succeeding.
type commitError struct{ err error }

func (e *commitError) Error() string { return "recording the run's results: " + e.err.Error() }
func (e *commitError) Unwrap() error { return e.err }

func (a *Annealer) recordOne(ctx context.Context, r result) {
	err := a.complete(ctx, []result{r})
	var ce *commitError
	if errors.As(err, &ce) {
		r.err, r.res.Private = ce, nil
		a.recordBatch(ctx, []result{r})
		return
	}
	if err != nil {
		a.recordBatch(ctx, []result{r}) // retries transient errors
	}
}

func (a *Annealer) recordBatch(ctx context.Context, batch []result) {
	for attempt := 1; ; attempt++ {
		err := a.complete(ctx, batch)
		if err == nil {
			return
		}
		if errors.Is(err, errFenced) {
			a.log.Warn("annealer: not recording run results: leadership lost", "runs", len(batch))
			return
		}
		if attempt >= 20 {
			a.log.Error("annealer: giving up recording run results; recovery will handle them", "runs", len(batch), "err", err)
			return
		}
		a.log.Warn("annealer: recording run results failed; retrying", "runs", len(batch), "err", err)
		time.Sleep(time.Duration(attempt) * 50 * time.Millisecond)
	}
}

// complete is the end of runs: TRANSITION → ACTIVE or ERROR, in one transaction for the batch.
func (a *Annealer) complete(ctx context.Context, batch []result) error {
	// The epoch: nothing is recorded when the database holds another epoch than this process's
	// (txEpoch), and the epoch row stays share-locked until this transaction ends, so no new
	// leader starts in between.
	a.mu.Lock()
	cur := a.epoch
	a.mu.Unlock()
	err := a.txEpoch(ctx, &cur, func(ctx context.Context, tx *ent.Tx) error {
		// Fence: a deposed leader records no completion (its runs belong to the new leader's
		// recovery). Checked inside the transaction, before any write.
		if err := a.fence(ctx); err != nil {
			return fmt.Errorf("%w: %v", errFenced, err)
		}
		// Completions of runs claimed under an older epoch (this process lost the leadership and
		// won it again meanwhile) are refused: those runs belong to recovery.
		batch = slices.DeleteFunc(slices.Clone(batch), func(r result) bool {
			if r.job.epoch != cur {
				a.log.Warn("annealer: refusing the completion of a run of an older leader epoch", "run", r.job.runID, "run_epoch", r.job.epoch, "epoch", cur)
				return true
			}
			return false
		})
		now := time.Now()
		runIDs := make([]int, len(batch))
		for i, r := range batch {
			runIDs[i] = r.job.runID
		}
		// Only runs still RUNNING count: a new leader may have abandoned a run of a process that
		// lost leadership, and must not see it completed behind its back.
		live := map[int]bool{}
		for start := 0; start < len(runIDs); start += chunk {
			ids, err := tx.Run.Query().Where(run.IDIn(runIDs[start:min(start+chunk, len(runIDs))]...), run.StatusEQ(run.StatusRUNNING)).IDs(ctx)
			if err != nil {
				return err
			}
			for _, id := range ids {
				live[id] = true
			}
		}
		var ok, bad []result
		for _, r := range batch {
			if !live[r.job.runID] {
				continue
			}
			if r.err == nil {
				ok = append(ok, r)
			} else {
				bad = append(bad, r)
			}
		}
		// Runs: grouped by identical outcome so quick, uniform runs cost one UPDATE per group.
		type runKey struct {
			status    run.Status
			out, log  string
			errText   string
			exit      int
			hasOutput bool
		}
		groups := map[runKey][]int{}
		outputs := map[string]map[string]any{}
		for _, r := range append(slices.Clone(ok), bad...) {
			k := runKey{status: run.StatusSUCCEEDED, log: r.res.Log}
			if r.err != nil {
				k.status, k.errText, k.exit = run.StatusFAILED, r.err.Error(), 1
			}
			if r.res.Output != nil {
				b, _ := json.Marshal(r.res.Output)
				k.out, k.hasOutput = string(b), true
				outputs[k.out] = r.res.Output
			}
			groups[k] = append(groups[k], r.job.runID)
		}
		for k, ids := range groups {
			for start := 0; start < len(ids); start += chunk {
				part := ids[start:min(start+chunk, len(ids))]
				u := tx.Run.Update().Where(run.IDIn(part...), run.StatusEQ(run.StatusRUNNING)).
					SetStatus(k.status).SetFinishedAt(now).SetExitStatus(k.exit)
				if k.log != "" {
					u.SetLog(k.log)
				}
				if k.errText != "" {
					u.SetError(k.errText)
				}
				if k.hasOutput {
					u.SetOutput(outputs[k.out])
				}
				if n, err := u.Save(ctx); err != nil {
					return err
				} else if n != len(part) {
					return errLostRace
				}
			}
		}
		// Records the executors found (inventory), in this transaction: with the success or not at all.
		for _, r := range ok {
			if c, isC := r.job.exec.(executor.Committer); isC {
				if err := c.Commit(ctx, tx, r.job.in, r.res); err != nil {
					return &commitError{err}
				}
			}
		}
		// Successes: TRANSITION → ACTIVE with the output as the wall, grouped by wall.
		walls := map[string]map[int]nodestate.State{}
		wallOf := map[string]map[string]any{}
		var okIDs []int
		for _, r := range ok {
			b, _ := json.Marshal(r.res.Output)
			k := string(b)
			if walls[k] == nil {
				walls[k] = map[int]nodestate.State{}
				wallOf[k] = r.res.Output
			}
			walls[k][r.job.nrID] = nodestate.Transition
			okIDs = append(okIDs, r.job.nrID)
		}
		for k, cur := range walls {
			w := wallOf[k]
			if w == nil {
				w = map[string]any{}
			}
			if _, err := transition(ctx, tx, cur, nodestate.Succeed{}, false, func(u *ent.NodeRoleUpdate) {
				u.AddRunCount(1).SetAttempts(0).ClearNextAttemptAt().SetStatus("ok").SetWall(w)
			}); err != nil {
				return err
			}
		}
		// Failures: TRANSITION → ERROR, with the retry policy's next attempt when it allows one.
		var badIDs []int
		for _, r := range bad {
			failures := r.job.attempts + 1
			msg := r.err.Error()
			var next *time.Time
			if d, again := r.job.policy.Retry(failures); again {
				t := now.Add(d)
				next = &t
				msg = fmt.Sprintf("%s (attempt %d of %d; retrying in %s)", msg, failures, r.job.policy.Attempts, d)
			} else if r.job.policy.Attempts > 1 {
				msg = fmt.Sprintf("%s (attempt %d of %d; retry manually)", msg, failures, r.job.policy.Attempts)
			}
			if _, err := transition(ctx, tx, map[int]nodestate.State{r.job.nrID: nodestate.Transition}, nodestate.Fail{},
				false, func(u *ent.NodeRoleUpdate) {
					u.SetAttempts(failures).SetNillableNextAttemptAt(next).SetStatus(truncate(msg, 1000))
				}); err != nil {
				return err
			}
			badIDs = append(badIDs, r.job.nrID)
		}
		if n := a.stats.succeeded.Add(int64(len(ok))); n/vacuumEvery != (n-int64(len(ok)))/vacuumEvery {
			a.vacuumSoon()
		}
		a.stats.failed.Add(int64(len(bad)))
		if len(badIDs) > 0 {
			if _, err := blockDescendants(ctx, tx, badIDs, nodestate.ParentFailed{}); err != nil {
				return err
			}
		}
		if len(okIDs) == 0 {
			return nil
		}
		// A parent re-annealed or failed while this one ran: the block it could not receive then.
		late, err := notAllParentsActive(ctx, tx, okIDs)
		if err != nil {
			return err
		}
		if len(late) > 0 {
			cur := map[int]nodestate.State{}
			for id := range late {
				cur[id] = nodestate.Active
			}
			if _, err := transition(ctx, tx, cur, nodestate.ParentFailed{}, false, nil); err != nil {
				return err
			}
			okIDs = slices.DeleteFunc(okIDs, func(id int) bool { return late[id] })
		}
		_, err = unblockChildren(ctx, tx, okIDs)
		return err
	})
	if errors.Is(err, errStaleEpoch) {
		return fmt.Errorf("%w: %v", errFenced, err)
	}
	return err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func keys(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

// vacuumEvery is how many successful runs pass between two VACUUMs of node_roles on PostgreSQL.
const vacuumEvery = 10000

// vacuumSoon vacuums the node-role table in the background on PostgreSQL. Every state change
// leaves a dead row version behind, and the claim query's index scan over state = 'TODO' walks
// them until autovacuum catches up, which during a large anneal it does not: claims grew slower
// with every batch.
func (a *Annealer) vacuumSoon() {
	if a.st.Dialect != "postgres" || !a.vacuuming.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer a.vacuuming.Store(false)
		if _, err := a.st.DB.ExecContext(context.Background(), "VACUUM (ANALYZE) node_roles, node_role_children, runs"); err != nil {
			a.log.Warn("annealer: vacuum", "err", err)
		}
	}()
}
