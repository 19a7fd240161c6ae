package agentapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/agenttask"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/provision/agent"
)

// maxOutput bounds the output kept per task; the rest is cut with a marker.
const maxOutput = agent.MaxReport

func (s *Server) work(w http.ResponseWriter, r *http.Request) (*agent.Task, error) {
	if err := method(r, http.MethodGet); err != nil {
		return nil, err
	}
	sess, err := s.session(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	wait := 0
	if w := q.Get("wait"); w != "" {
		if wait, err = strconv.Atoi(w); err != nil || wait < 0 {
			return nil, fail(http.StatusBadRequest, "wait: want whole seconds ≥ 0, got %q", w)
		}
	}
	maxWait := s.MaxWait
	if maxWait <= 0 {
		maxWait = 25 * time.Second
	}
	var have []int
	if h := q.Get("have"); h != "" {
		for _, f := range strings.Split(h, ",") {
			id, err := strconv.Atoi(f)
			if err != nil {
				return nil, fail(http.StatusBadRequest, "have: bad task id %q", f)
			}
			have = append(have, id)
		}
	}
	deadline := time.Now().Add(min(time.Duration(wait)*time.Second, maxWait))
	if s.hold() {
		defer s.held.Add(-1)
	} else {
		// Too many polls held: look, wait a second at most, and tell the agent when to come
		// back, so the server's memory does not grow with the fleet.
		if soon := time.Now().Add(time.Second); soon.Before(deadline) {
			deadline = soon
		}
		w.Header().Set("Retry-After", strconv.Itoa(s.retryAfter()))
	}
	feed := NotifierFor(s.Store)
	for {
		// Register interest before looking, so a task queued between the look and the wait wakes us.
		woken := s.wait(sess.machine)
		queued := feed.Wait(r.Context(), sess.machine)
		t, err := s.look(r.Context(), sess, have)
		if err != nil || t != nil {
			return t, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, nil
		}
		// The event feed wakes us for a task queued by any replica; without it (unreadable),
		// poll the database every second. Either way every long poll starts with a look, which
		// is the slow fallback should a wake-up be lost.
		poll := left
		if queued == nil {
			poll = min(left, time.Second)
		}
		select {
		case <-woken:
		case <-queued:
		case <-time.After(poll):
		case <-r.Context().Done():
			return nil, nil
		}
	}
}

// look runs next on a goroutine of its own: the deep stack of a database call (ent, the SQL
// driver) then does not stay with the long poll's goroutine, which waits with a small one — with
// thousands of polls held, that is most of their memory.
func (s *Server) look(ctx context.Context, sess session, have []int) (*agent.Task, error) {
	type answer struct {
		t   *agent.Task
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		t, err := s.next(ctx, sess, have)
		ch <- answer{t, err}
	}()
	a := <-ch
	return a.t, a.err
}

// next is claim behind a plain read: the claim is a write transaction (on SQLite it takes the
// database's write lock), and nearly every look of a fleet of idle agents finds nothing.
func (s *Server) next(ctx context.Context, sess session, have []int) (*agent.Task, error) {
	ok, err := s.Store.Client.AgentTask.Query().Where(agenttask.MachineID(sess.machine), agenttask.Or(
		agenttask.StateEQ(agenttask.StateQUEUED),
		agenttask.And(agenttask.StateEQ(agenttask.StateRUNNING), agenttask.Boot(sess.trace), agenttask.IDNotIn(have...)),
	)).Exist(ctx)
	if err != nil || !ok {
		return nil, err
	}
	return s.claim(ctx, sess, have)
}

// claim hands out the machine's next task: a RUNNING task of this boot the agent does not hold
// (the answer handing it over was lost), else the oldest QUEUED one, marked RUNNING.
func (s *Server) claim(ctx context.Context, sess session, have []int) (*agent.Task, error) {
	var out *agent.Task
	err := s.Store.Tx(events.WithActor(ctx, "agent"), func(ctx context.Context, tx *ent.Tx) error {
		out = nil
		lost, err := tx.AgentTask.Query().Where(agenttask.MachineID(sess.machine), agenttask.StateEQ(agenttask.StateRUNNING),
			agenttask.Boot(sess.trace), agenttask.IDNotIn(have...)).Order(ent.Asc(agenttask.FieldID)).First(ctx)
		if err == nil {
			out = wire(lost)
			return nil
		}
		if !ent.IsNotFound(err) {
			return err
		}
		for range 3 {
			t, err := tx.AgentTask.Query().Where(agenttask.MachineID(sess.machine), agenttask.StateEQ(agenttask.StateQUEUED)).
				Order(ent.Asc(agenttask.FieldID)).First(ctx)
			if ent.IsNotFound(err) {
				return nil
			}
			if err != nil {
				return err
			}
			n, err := tx.AgentTask.Update().Where(agenttask.ID(t.ID), agenttask.StateEQ(agenttask.StateQUEUED)).
				SetState(agenttask.StateRUNNING).SetBoot(sess.trace).SetStartedAt(s.now()).Save(ctx)
			if err != nil {
				return err
			}
			if n == 1 {
				out = wire(t)
				mid := sess.machine
				return events.Emit(ctx, "agent.task.start", "machine", mid, &mid, map[string]any{"task": t.ID, "name": t.Name,
					"trace": sess.trace, "step": "task " + t.Name + " start", "start": s.now().UTC().Format(time.RFC3339Nano)})
			}
		}
		return nil
	})
	return out, err
}

func wire(t *ent.AgentTask) *agent.Task {
	return &agent.Task{ID: t.ID, Name: t.Name, Kind: string(t.Kind), Script: t.Script, TimeoutSeconds: t.TimeoutSeconds}
}

func (s *Server) output(r *http.Request) error {
	if err := method(r, http.MethodPost); err != nil {
		return err
	}
	sess, err := s.session(r)
	if err != nil {
		return err
	}
	id, err1 := strconv.Atoi(r.URL.Query().Get("task"))
	off, err2 := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
	if err1 != nil || err2 != nil || off < 0 {
		return fail(http.StatusBadRequest, "want ?task=ID&offset=N")
	}
	chunk, err := readBody(r)
	if err != nil {
		return err
	}
	return s.Store.Tx(events.WithActor(r.Context(), "agent"), func(ctx context.Context, tx *ent.Tx) error {
		t, err := tx.AgentTask.Query().Where(agenttask.ID(id), agenttask.MachineID(sess.machine)).Only(ctx)
		if ent.IsNotFound(err) {
			return fail(http.StatusNotFound, "no task %d for machine %d", id, sess.machine)
		}
		if err != nil {
			return err
		}
		if t.State != agenttask.StateRUNNING {
			return fail(http.StatusConflict, "task %d is %s, not running", id, t.State)
		}
		return appendOutput(ctx, t, off, string(chunk))
	})
}

// appendOutput appends chunk at off: a repeat of a chunk already stored changes nothing, a gap is
// refused (409), so the stored output never has holes or doubles.
func appendOutput(ctx context.Context, t *ent.AgentTask, off int64, chunk string) error {
	cur := int64(len(t.Output))
	switch {
	case off+int64(len(chunk)) <= cur:
		return nil
	case off > cur:
		return fail(http.StatusConflict, "output offset %d is past the %d bytes stored", off, cur)
	}
	next := t.Output + chunk[cur-off:]
	if len(next) > maxOutput {
		next = next[:maxOutput] + "\n[output cut]\n"
	}
	return t.Update().SetOutput(next).Exec(ctx)
}

func (s *Server) result(r *http.Request) (any, error) {
	if err := method(r, http.MethodPost); err != nil {
		return nil, err
	}
	sess, err := s.session(r)
	if err != nil {
		return nil, err
	}
	data, err := readBody(r)
	if err != nil {
		return nil, err
	}
	var res agent.Result
	if err := decode(data, &res); err != nil {
		return nil, err
	}
	if res.Task <= 0 || res.ResultID == "" || len(res.ResultID) > 64 || len(res.Error) > maxString*4 {
		return nil, fail(http.StatusUnprocessableEntity, "a result needs a task id and a result id (≤ 64 bytes)")
	}
	var out map[string]any
	err = s.Store.Tx(events.WithActor(r.Context(), "agent"), func(ctx context.Context, tx *ent.Tx) error {
		t, err := tx.AgentTask.Query().Where(agenttask.ID(res.Task), agenttask.MachineID(sess.machine)).Only(ctx)
		if ent.IsNotFound(err) {
			return fail(http.StatusNotFound, "no task %d for machine %d", res.Task, sess.machine)
		}
		if err != nil {
			return err
		}
		switch t.State {
		case agenttask.StateDONE, agenttask.StateFAILED:
			he := fail(http.StatusConflict, "the result of task %d is already recorded", res.Task)
			he.extra = map[string]any{"sameResult": t.ResultID == res.ResultID}
			return he
		case agenttask.StateQUEUED:
			return fail(http.StatusConflict, "task %d was never handed out", res.Task)
		}
		if res.Output != "" {
			if err := appendOutput(ctx, t, res.OutputOffset, res.Output); err != nil {
				return err
			}
		}
		state := agenttask.StateDONE
		if res.ExitCode != 0 || res.Error != "" {
			state = agenttask.StateFAILED
		}
		code := res.ExitCode
		if err := tx.AgentTask.UpdateOneID(t.ID).SetState(state).SetExitCode(code).SetError(res.Error).
			SetResultID(res.ResultID).SetFinishedAt(s.now()).Exec(ctx); err != nil {
			return err
		}
		out = map[string]any{"task": t.ID, "state": string(state)}
		mid := sess.machine
		ch := map[string]any{"task": t.ID, "name": t.Name, "state": string(state), "exitCode": code, "trace": sess.trace,
			"step": "task " + t.Name + " end", "start": s.now().UTC().Format(time.RFC3339Nano)}
		if t.StartedAt != nil {
			ch["duration_ms"] = s.now().Sub(*t.StartedAt).Milliseconds()
		}
		return events.Emit(ctx, "agent.task.end", "machine", mid, &mid, ch)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Queue adds a task for machine id, keyed by key (one task per key: queuing the same key again
// returns the existing task, so an executor re-run does not run its script twice).
func Queue(ctx context.Context, tx *ent.Tx, id int, nodeRole *int, key, kind, script string, timeout time.Duration) (*ent.AgentTask, error) {
	if t, err := tx.AgentTask.Query().Where(agenttask.MachineID(id), agenttask.Name(key)).First(ctx); err == nil {
		return t, nil
	} else if !ent.IsNotFound(err) {
		return nil, err
	}
	secs := int(timeout.Seconds())
	if secs <= 0 {
		secs = 300
	}
	return tx.AgentTask.Create().SetMachineID(id).SetNillableNodeRoleID(nodeRole).SetName(key).
		SetKind(agenttask.Kind(kind)).SetScript(script).SetTimeoutSeconds(secs).Save(ctx)
}

// ErrTaskFailed is wrapped by WaitTask when the task ended FAILED.
var ErrTaskFailed = fmt.Errorf("agent task failed")
