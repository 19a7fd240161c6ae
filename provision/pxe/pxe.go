// Package pxe holds the executors that work through network boot and the discovery agent:
//
//   - pxe-discover: set the machine's bootenv to discovery, PXE-boot it once through its BMC (the
//     bmc executor's boot-device and power actions), and wait — bounded — for its agent to check in;
//   - agent-task: run a role's script template, rendered with the node-role's attributes, on the
//     machine's agent, and wait for its result;
//   - os-install: set an install bootenv, reboot through the BMC, and wait for the installer's
//     completion callback, which flips the bootenv to local;
//   - local-boot: set the bootenv to local.
//
// Executors never write the database themselves: what they change goes through Backend, the
// agent protocol's store (provision/agentapi implements it).
package pxe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"text/template"
	"time"

	"github.com/prybar/prybar/scheduler/executor"
)

// Task is the state of an agent task.
type Task struct {
	ID       int
	State    string // QUEUED, RUNNING, DONE, FAILED
	ExitCode *int
	Output   string
	Error    string
}

// Backend is what the executors need from the inventory and the agent protocol.
type Backend interface {
	// SetBootenv sets machine id's bootenv.
	SetBootenv(ctx context.Context, id int, env string) error
	// Bootenv returns machine id's bootenv.
	Bootenv(ctx context.Context, id int) (string, error)
	// CheckedIn reports when machine id's agent last registered (zero: never).
	CheckedIn(ctx context.Context, id int) (time.Time, error)
	// QueueTask queues a task for machine id on behalf of node-role nodeRole, once: while an
	// earlier task of that node-role with the same script has not failed, it is returned instead.
	QueueTask(ctx context.Context, id, nodeRole int, name, kind, script string, timeout time.Duration) (Task, error)
	// Task returns the task's current state.
	Task(ctx context.Context, taskID int) (Task, error)
	// LatestTask returns the newest task of node-role nodeRole (ok false: none).
	LatestTask(ctx context.Context, nodeRole int) (Task, bool, error)
}

// Waiter is optionally implemented by a Backend whose changes can be waited for: Changed returns
// a channel closed at machine id's next agent event (a check-in, a task queued or ended), or nil
// when it cannot tell. Call it before looking, so a change between the look and the wait is not
// missed.
type Waiter interface {
	Changed(ctx context.Context, id int) <-chan struct{}
}

// poll is how often waiting executors look at the database (tasks and check-ins come from
// another request, possibly another replica). slowPoll is the fallback when the backend wakes
// them (Waiter): thousands of machines waiting on their agents must not cost thousands of
// queries a second.
var (
	poll     = 250 * time.Millisecond
	slowPoll = 5 * time.Second
)

// changed is the backend's wake-up channel for machine id (nil: none) and how long to wait for it
// before looking anyway.
func changed(ctx context.Context, b Backend, id int) (<-chan struct{}, time.Duration) {
	if w, ok := b.(Waiter); ok {
		if ch := w.Changed(ctx, id); ch != nil {
			return ch, slowPoll
		}
	}
	return nil, poll
}

// await waits for ch, d or ctx.
func await(ctx context.Context, ch <-chan struct{}, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-ch:
		return nil
	case <-time.After(d):
		return nil
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// AgentTask is the agent-task executor.
type AgentTask struct{ Backend Backend }

// Name implements executor.Executor.
func (AgentTask) Name() string { return "agent-task" }

// Idempotent: a second run of the same node-role finds the task the first one queued (running or
// done) and waits for it rather than queuing the script again, so its effect happens once.
func (AgentTask) Idempotent() bool { return true }

// Timeout implements executor.Executor.
func (AgentTask) Timeout() time.Duration { return 30 * time.Minute }

// ConcurrencyKey: the agent runs one task at a time anyway.
func (AgentTask) ConcurrencyKey(in executor.Input) string {
	return fmt.Sprintf("agent:%d", in.Machine.ID)
}

// Render renders the role's script template with the node-role's attributes (and the machine).
func Render(in executor.Input) (string, error) {
	src, _ := in.Attrs["script"].(string)
	if src == "" {
		return "", errors.New("agent-task: the role has no script attribute")
	}
	t, err := template.New(in.Role).Option("missingkey=error").Parse(src)
	if err != nil {
		return "", fmt.Errorf("agent-task: script template: %w", err)
	}
	data := maps.Clone(in.Attrs)
	data["machine"] = map[string]any{"id": in.Machine.ID, "name": in.Machine.Name}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("agent-task: script template: %w", err)
	}
	return b.String(), nil
}

func durationAttr(attrs map[string]any, key string, def time.Duration) time.Duration {
	if s, ok := attrs[key].(string); ok {
		if d, err := time.ParseDuration(s); err == nil && d > 0 {
			return d
		}
	}
	return def
}

// Run implements executor.Executor.
func (a AgentTask) Run(ctx context.Context, in executor.Input) (executor.Result, error) {
	script, err := Render(in)
	if err != nil {
		return executor.Result{}, err
	}
	if err := executor.Fence(ctx); err != nil {
		return executor.Result{}, err
	}
	t, err := a.Backend.QueueTask(ctx, in.Machine.ID, in.NodeRoleID, in.Role, "SCRIPT", script, durationAttr(in.Attrs, "task_timeout", 5*time.Minute))
	if err != nil {
		return executor.Result{}, err
	}
	for {
		ch, d := changed(ctx, a.Backend, in.Machine.ID)
		if ch != nil {
			// Look again after registering for the wake-up: the task may have ended meanwhile.
			if t, err = a.Backend.Task(ctx, t.ID); err != nil {
				return executor.Result{}, err
			}
		}
		switch t.State {
		case "DONE":
			return executor.Result{Output: map[string]any{"agent_task": map[string]any{"id": t.ID, "exit_code": 0, "output": t.Output}}, Log: t.Output}, nil
		case "FAILED":
			code := -1
			if t.ExitCode != nil {
				code = *t.ExitCode
			}
			return executor.Result{Log: t.Output}, fmt.Errorf("agent task %d failed (exit %d) %s", t.ID, code, t.Error)
		}
		if err := await(ctx, ch, d); err != nil {
			return executor.Result{Log: t.Output}, fmt.Errorf("agent task %d still %s: %w", t.ID, t.State, err)
		}
		if ch == nil {
			if t, err = a.Backend.Task(ctx, t.ID); err != nil {
				return executor.Result{}, err
			}
		}
	}
}

// Applied implements executor.Verifier: the node-role's task is done.
func (a AgentTask) Applied(ctx context.Context, in executor.Input) (bool, map[string]any, error) {
	t, ok, err := a.Backend.LatestTask(ctx, in.NodeRoleID)
	if err != nil || !ok || t.State != "DONE" {
		return false, nil, err
	}
	return true, map[string]any{"agent_task": map[string]any{"id": t.ID, "exit_code": 0, "output": t.Output}}, nil
}

// Discover is the pxe-discover executor.
type Discover struct {
	Backend Backend
	// BMC is the out-of-band executor (bmc) used to PXE-boot the machine once.
	BMC executor.Executor
}

// Name implements executor.Executor.
func (Discover) Name() string { return "pxe-discover" }

// Idempotent: booting into discovery again is harmless (the agent merges the same inventory).
func (Discover) Idempotent() bool { return true }

// Timeout implements executor.Executor.
func (Discover) Timeout() time.Duration { return 15 * time.Minute }

// ConcurrencyKey is the BMC's, like the bmc executor's.
func (d Discover) ConcurrencyKey(in executor.Input) string {
	if in.Machine.BMC != nil {
		return "bmc:" + in.Machine.BMC.Key()
	}
	return ""
}

// OutOfBand: it works on machines that are not alive yet.
func (Discover) OutOfBand() bool { return true }

// Run implements executor.Executor.
func (d Discover) Run(ctx context.Context, in executor.Input) (executor.Result, error) {
	var log bytes.Buffer
	logf := func(f string, a ...any) { fmt.Fprintf(&log, f+"\n", a...) }
	start := time.Now()
	if err := executor.Fence(ctx); err != nil {
		return executor.Result{}, err
	}
	if err := d.Backend.SetBootenv(ctx, in.Machine.ID, "discovery"); err != nil {
		return executor.Result{}, err
	}
	logf("bootenv discovery set")
	if d.BMC != nil && in.Machine.BMC != nil {
		// boot-device sets PXE for the next boot only, verifies it, then powers on a machine that
		// is off or cycles one that is on.
		bin := in
		bin.Attrs = map[string]any{"action": "boot-device", "device": "pxe", "persistent": false}
		res, err := d.BMC.Run(ctx, bin)
		log.WriteString(res.Log)
		if err != nil {
			return executor.Result{Log: log.String()}, fmt.Errorf("pxe-discover: PXE boot through the BMC: %w", err)
		}
	} else {
		logf("no BMC: waiting for the machine to be network-booted by hand")
	}
	for {
		ch, wait := changed(ctx, d.Backend, in.Machine.ID)
		at, err := d.Backend.CheckedIn(ctx, in.Machine.ID)
		if err != nil {
			return executor.Result{Log: log.String()}, err
		}
		if !at.IsZero() && !at.Before(start.Add(-time.Second)) {
			logf("agent checked in after %v", at.Sub(start).Round(time.Millisecond))
			return executor.Result{Output: map[string]any{"discovery": map[string]any{"checked_in": at.UTC().Format(time.RFC3339Nano),
				"seconds": at.Sub(start).Seconds()}}, Log: log.String()}, nil
		}
		if err := await(ctx, ch, wait); err != nil {
			return executor.Result{Log: log.String()}, fmt.Errorf("pxe-discover: the agent did not check in: %w", err)
		}
	}
}

// Install is the os-install executor.
type Install struct {
	Backend Backend
	BMC     executor.Executor
}

// Name implements executor.Executor.
func (Install) Name() string { return "os-install" }

// Idempotent: no. An install that ran may have been completed; Applied tells (bootenv local).
func (Install) Idempotent() bool { return false }

// Timeout implements executor.Executor.
func (Install) Timeout() time.Duration { return 2 * time.Hour }

// ConcurrencyKey implements executor.Executor.
func (Install) ConcurrencyKey(in executor.Input) string { return "" }

// Run implements executor.Executor: set the install bootenv (attribute bootenv, default
// debian-12-install), reboot through the BMC, wait until the completion callback flipped the
// bootenv to local.
func (i Install) Run(ctx context.Context, in executor.Input) (executor.Result, error) {
	env, _ := in.Attrs["bootenv"].(string)
	if env == "" {
		env = "debian-12-install"
	}
	if err := executor.Fence(ctx); err != nil {
		return executor.Result{}, err
	}
	if err := i.Backend.SetBootenv(ctx, in.Machine.ID, env); err != nil {
		return executor.Result{}, err
	}
	var log bytes.Buffer
	if i.BMC != nil && in.Machine.BMC != nil {
		bin := in
		bin.Attrs = map[string]any{"action": "boot-device", "device": "pxe", "persistent": false}
		res, err := i.BMC.Run(ctx, bin)
		log.WriteString(res.Log)
		if err != nil {
			return executor.Result{Log: log.String()}, fmt.Errorf("os-install: PXE boot through the BMC: %w", err)
		}
	}
	for {
		cur, err := i.Backend.Bootenv(ctx, in.Machine.ID)
		if err != nil {
			return executor.Result{Log: log.String()}, err
		}
		if cur == "local" {
			return executor.Result{Output: map[string]any{"os_install": map[string]any{"bootenv": env, "done": true}}, Log: log.String()}, nil
		}
		if cur != env {
			return executor.Result{Log: log.String()}, fmt.Errorf("os-install: the machine was moved to bootenv %q meanwhile", cur)
		}
		if err := sleep(ctx, poll); err != nil {
			return executor.Result{Log: log.String()}, fmt.Errorf("os-install: no completion callback: %w", err)
		}
	}
}

// Applied implements executor.Verifier: the callback has flipped the bootenv to local.
func (i Install) Applied(ctx context.Context, in executor.Input) (bool, map[string]any, error) {
	cur, err := i.Backend.Bootenv(ctx, in.Machine.ID)
	if err != nil || cur != "local" {
		return false, nil, err
	}
	return true, map[string]any{"os_install": map[string]any{"done": true}}, nil
}

// LocalBoot is the local-boot executor.
type LocalBoot struct{ Backend Backend }

// Name implements executor.Executor.
func (LocalBoot) Name() string { return "local-boot" }

// Idempotent implements executor.Executor.
func (LocalBoot) Idempotent() bool { return true }

// Timeout implements executor.Executor.
func (LocalBoot) Timeout() time.Duration { return time.Minute }

// ConcurrencyKey implements executor.Executor.
func (LocalBoot) ConcurrencyKey(executor.Input) string { return "" }

// Run implements executor.Executor.
func (l LocalBoot) Run(ctx context.Context, in executor.Input) (executor.Result, error) {
	if err := executor.Fence(ctx); err != nil {
		return executor.Result{}, err
	}
	if err := l.Backend.SetBootenv(ctx, in.Machine.ID, "local"); err != nil {
		return executor.Result{}, err
	}
	return executor.Result{Output: map[string]any{"bootenv": "local"}}, nil
}
