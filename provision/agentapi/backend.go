package agentapi

import (
	"context"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/agenttask"
	"github.com/prybar/prybar/ent/event"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/provision/ipxe"
	"github.com/prybar/prybar/provision/pxe"
)

// Backend implements pxe.Backend over the store; Server (optional) is woken when a task is
// queued, so the agent's long poll answers at once.
type Backend struct {
	Server *Server
}

var (
	_ pxe.Backend = (*Backend)(nil)
	_ pxe.Waiter  = (*Backend)(nil)
)

// SetBootenv implements pxe.Backend.
func (b *Backend) SetBootenv(ctx context.Context, id int, env string) error {
	return b.Server.Store.Tx(events.WithActor(ctx, "pxe"), func(ctx context.Context, tx *ent.Tx) error {
		m, err := tx.Machine.Get(ctx, id)
		if err != nil || m.Bootenv == env {
			return err
		}
		_, err = ipxe.SetBootenv(ctx, tx, id, env)
		return err
	})
}

// Bootenv implements pxe.Backend.
func (b *Backend) Bootenv(ctx context.Context, id int) (string, error) {
	m, err := b.Server.Store.Client.Machine.Get(ctx, id)
	if err != nil {
		return "", err
	}
	return m.Bootenv, nil
}

// Changed implements pxe.Waiter: the machine's next agent event (check-in, task queued or ended),
// from the event feed; nil when the feed cannot be read.
func (b *Backend) Changed(ctx context.Context, id int) <-chan struct{} {
	return NotifierFor(b.Server.Store).Wait(ctx, id)
}

// CheckedIn implements pxe.Backend from the agent.registered events.
func (b *Backend) CheckedIn(ctx context.Context, id int) (time.Time, error) {
	e, err := b.Server.Store.Client.Event.Query().Where(event.MachineID(id), event.Kind("agent.registered")).
		Order(ent.Desc(event.FieldSeq)).First(ctx)
	if ent.IsNotFound(err) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	return e.Time, nil
}

func status(t *ent.AgentTask) pxe.Task {
	return pxe.Task{ID: t.ID, State: string(t.State), ExitCode: t.ExitCode, Output: t.Output, Error: t.Error}
}

// QueueTask implements pxe.Backend.
func (b *Backend) QueueTask(ctx context.Context, id, nodeRole int, name, kind, script string, timeout time.Duration) (pxe.Task, error) {
	var out pxe.Task
	err := b.Server.Store.Tx(events.WithActor(ctx, "pxe"), func(ctx context.Context, tx *ent.Tx) error {
		prev, err := tx.AgentTask.Query().Where(agenttask.NodeRoleID(nodeRole)).Order(ent.Desc(agenttask.FieldID)).First(ctx)
		if err == nil && prev.State != agenttask.StateFAILED && prev.Script == script && prev.MachineID == id {
			out = status(prev)
			return nil
		}
		if err != nil && !ent.IsNotFound(err) {
			return err
		}
		secs := max(int(timeout.Seconds()), 1)
		t, err := tx.AgentTask.Create().SetMachineID(id).SetNodeRoleID(nodeRole).SetName(name).SetKind(agenttask.Kind(kind)).
			SetScript(script).SetTimeoutSeconds(secs).Save(ctx)
		if err != nil {
			return err
		}
		out = status(t)
		mid := id
		return events.Emit(ctx, "agent.task.queued", "machine", id, &mid, map[string]any{"task": t.ID, "name": name, "node_role": nodeRole})
	})
	if err == nil {
		b.Server.Notify(id)
	}
	return out, err
}

// Task implements pxe.Backend.
func (b *Backend) Task(ctx context.Context, taskID int) (pxe.Task, error) {
	t, err := b.Server.Store.Client.AgentTask.Get(ctx, taskID)
	if err != nil {
		return pxe.Task{}, err
	}
	return status(t), nil
}

// LatestTask implements pxe.Backend.
func (b *Backend) LatestTask(ctx context.Context, nodeRole int) (pxe.Task, bool, error) {
	t, err := b.Server.Store.Client.AgentTask.Query().Where(agenttask.NodeRoleID(nodeRole)).Order(ent.Desc(agenttask.FieldID)).First(ctx)
	if ent.IsNotFound(err) {
		return pxe.Task{}, false, nil
	}
	if err != nil {
		return pxe.Task{}, false, err
	}
	return status(t), true, nil
}
