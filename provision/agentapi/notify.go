package agentapi

import (
	"context"
	"sync"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/internal/store"
)

// notifyKinds are the events after which something waiting on a machine's agent looks again: a
// check-in (pxe-discover), a queued task (the agent's long poll), a task's end (agent-task).
var notifyKinds = []string{"agent.registered", "agent.task.queued", "agent.task.end"}

// notifyIdle is how long the notifier keeps its event subscription without any waiter.
var notifyIdle = 30 * time.Second

// Notifier wakes whatever waits on a machine's agent when one of notifyKinds is recorded for
// that machine. It reads the event feed (the store hub's shared tail), so events committed by
// another replica wake waiters here too (PostgreSQL NOTIFY pokes the hub), and one table read
// serves every waiter: thousands of machines waiting cost no database queries while nothing
// happens. Waiters still look at the database now and then, in case a wake-up is lost.
type Notifier struct {
	st *store.Store

	mu      sync.Mutex
	waiters map[int]chan struct{}
	running bool
	used    bool // a waiter registered since the last idle check
}

var (
	notifiersMu sync.Mutex
	notifiers   = map[*store.Store]*Notifier{}
)

// NotifierFor returns the store's notifier (one per store, shared by the agent server and the
// executors' backend of a process).
func NotifierFor(st *store.Store) *Notifier {
	notifiersMu.Lock()
	defer notifiersMu.Unlock()
	n := notifiers[st]
	if n == nil {
		n = &Notifier{st: st, waiters: map[int]chan struct{}{}}
		notifiers[st] = n
	}
	return n
}

// Wait returns a channel closed at the next agent event of machine id. Call it before looking
// at the database, so an event recorded between the look and the wait is not missed. It returns
// nil (never closed: poll instead) when the feed cannot be read.
func (n *Notifier) Wait(ctx context.Context, id int) <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running {
		// Subscribe from the newest event now, before the caller looks: anything it cannot see
		// yet comes through the subscription.
		after, err := events.LastSeq(ctx, n.st.Client)
		if err != nil {
			return nil
		}
		sctx, cancel := context.WithCancel(context.Background())
		sub := n.st.Hub.Tail(n.st.Client, nil).Subscribe(sctx, after, events.Filter{Kinds: notifyKinds})
		n.running = true
		go n.run(sub, cancel)
	}
	n.used = true
	ch, ok := n.waiters[id]
	if !ok {
		ch = make(chan struct{})
		n.waiters[id] = ch
	}
	return ch
}

func (n *Notifier) run(sub <-chan *ent.Event, cancel context.CancelFunc) {
	idle := time.NewTicker(notifyIdle)
	defer idle.Stop()
	stop := func() {
		cancel()
		for range sub { // drain until the subscription has ended
		}
	}
	for {
		select {
		case e, ok := <-sub:
			if !ok {
				// The subscription ended (its position was pruned): wake everyone, and the next
				// Wait subscribes again.
				n.mu.Lock()
				n.wakeAllLocked()
				n.running = false
				n.mu.Unlock()
				cancel()
				return
			}
			if e.MachineID == nil {
				continue
			}
			n.mu.Lock()
			if ch, ok := n.waiters[*e.MachineID]; ok {
				close(ch)
				delete(n.waiters, *e.MachineID)
			}
			n.mu.Unlock()
		case <-idle.C:
			n.mu.Lock()
			if !n.used {
				// Nobody asked for a whole period: whoever still holds a channel (a request that
				// ended without an event) is woken, and the next Wait subscribes again.
				n.wakeAllLocked()
				n.running = false
				n.mu.Unlock()
				stop()
				return
			}
			n.used = false
			n.mu.Unlock()
		}
	}
}

func (n *Notifier) wakeAllLocked() {
	for id, ch := range n.waiters {
		close(ch)
		delete(n.waiters, id)
	}
}
