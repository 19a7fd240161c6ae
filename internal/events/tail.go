package events

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prybar/prybar/ent"
)

// Tail is the shared reader behind live subscriptions: one goroutine reads each new event once
// (after every poke of the hub) and hands it to every subscriber whose filter matches, through a
// bounded per-subscriber buffer. Before (re)joining the tail a subscriber reads the table itself
// from its cursor, so the backlog, a fresh subscription and a subscriber that fell behind all use
// the same path: a subscriber whose buffer is full when an event arrives is dropped from the tail,
// delivers what it had buffered, replays the rest from the table and joins again. Nothing is lost
// and nothing is delivered twice, because every hand-off happens at a seq cursor.
//
// With N subscribers, a commit costs one table read instead of N.
type Tail struct {
	client *ent.Client
	hub    *Hub
	log    *slog.Logger
	// Buffer is each subscriber's buffer (default 256 events).
	Buffer int

	mu      sync.Mutex
	subs    map[*tailSub]struct{}
	last    int64 // newest seq read by the tail; every event up to it is visible
	inited  bool
	running bool

	drops  atomic.Int64
	reads  atomic.Int64
	initMu sync.Mutex
}

type tailSub struct {
	f       Filter
	buf     chan *ent.Event
	cursor  int64 // newest seq handed to buf (or caught up to); guarded by Tail.mu
	dropped chan struct{}
}

// NewTail returns a tail over client woken by hub. It starts reading when the first subscriber
// joins and stops when the last one leaves.
func NewTail(client *ent.Client, hub *Hub, log *slog.Logger) *Tail {
	return &Tail{client: client, hub: hub, log: log, Buffer: 256, subs: map[*tailSub]struct{}{}}
}

// Drops returns how many times a subscriber fell behind its buffer and replayed from the table.
func (t *Tail) Drops() int64 { return t.drops.Load() }

// Reads returns how many table reads the shared reader made.
func (t *Tail) Reads() int64 { return t.reads.Load() }

// matches reports whether e passes f (the in-memory twin of Filter.predicates).
func (f Filter) matches(e *ent.Event) bool {
	if len(f.Kinds) > 0 && !slices.Contains(f.Kinds, e.Kind) {
		return false
	}
	in := func(ids []int, v *int) bool { return len(ids) == 0 || (v != nil && slices.Contains(ids, *v)) }
	return in(f.SiteIDs, e.SiteID) && in(f.RackIDs, e.RackID) && in(f.MachineIDs, e.MachineID)
}

func (t *Tail) init(ctx context.Context) error {
	t.initMu.Lock()
	defer t.initMu.Unlock()
	t.mu.Lock()
	done := t.inited
	t.mu.Unlock()
	if done {
		return nil
	}
	last, err := LastSeq(ctx, t.client)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.last, t.inited = max(t.last, last), true
	t.mu.Unlock()
	return nil
}

// Subscribe delivers every event matching f with seq > after, in seq order, first the backlog then
// live, until ctx ends; the channel closes then (or when the reader's position was pruned, see
// CheckResume).
func (t *Tail) Subscribe(ctx context.Context, after int64, f Filter) <-chan *ent.Event {
	out := make(chan *ent.Event, 64)
	go func() {
		defer close(out)
		cursor := after
		send := func(e *ent.Event) bool {
			select {
			case out <- e:
				cursor = e.Seq
				return true
			case <-ctx.Done():
				return false
			}
		}
		for {
			if !t.catchUp(ctx, &cursor, f, send) {
				return
			}
			s := t.join(cursor, f)
			if s == nil {
				continue // the tail moved on meanwhile: read the table again
			}
			if !t.live(ctx, s, send) {
				return
			}
			// Dropped: what was buffered is delivered; the rest comes from the table.
		}
	}()
	return out
}

// catchUp reads the table from *cursor until it has everything the tail has read.
func (t *Tail) catchUp(ctx context.Context, cursor *int64, f Filter, send func(*ent.Event) bool) bool {
	backoff := 100 * time.Millisecond
	for {
		if err := t.init(ctx); err != nil {
			if !t.retry(ctx, &backoff, *cursor, err) {
				return false
			}
			continue
		}
		t.mu.Lock()
		hw := t.last // read before the page: every event up to hw is visible to it
		t.mu.Unlock()
		evs, err := Page(ctx, t.client, *cursor, MaxPage, f)
		if err != nil {
			if !t.retry(ctx, &backoff, *cursor, err) {
				return false
			}
			continue
		}
		if len(evs) > 0 && evs[0].Seq > *cursor+1 {
			// A gap: normal under a filter, but it may be retention pruning past this reader.
			if err := CheckResume(ctx, t.client, *cursor); err != nil {
				if t.log != nil {
					t.log.Warn("event stream ends: its position was pruned", "after", *cursor, "err", err)
				}
				return false
			}
		}
		for _, e := range evs {
			if !send(e) {
				return false
			}
		}
		if len(evs) == MaxPage {
			continue
		}
		*cursor = max(*cursor, hw)
		return true
	}
}

func (t *Tail) retry(ctx context.Context, backoff *time.Duration, cursor int64, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	if t.log != nil {
		t.log.Warn("event stream read failed; retrying", "after", cursor, "err", err)
	}
	select {
	case <-time.After(*backoff):
		*backoff = min(*backoff*2, 5*time.Second)
		return true
	case <-ctx.Done():
		return false
	}
}

// join registers a subscriber at cursor, unless the tail has read past it (then nil).
func (t *Tail) join(cursor int64, f Filter) *tailSub {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cursor < t.last {
		return nil
	}
	s := &tailSub{f: f, buf: make(chan *ent.Event, max(t.Buffer, 1)), cursor: cursor, dropped: make(chan struct{})}
	t.subs[s] = struct{}{}
	if !t.running {
		t.running = true
		go t.run()
	}
	return s
}

// live forwards s's buffer until ctx ends (false) or the tail drops s (true, buffer drained).
func (t *Tail) live(ctx context.Context, s *tailSub, send func(*ent.Event) bool) bool {
	defer func() {
		t.mu.Lock()
		delete(t.subs, s)
		t.mu.Unlock()
	}()
	for {
		select {
		case e := <-s.buf:
			if !send(e) {
				return false
			}
		case <-s.dropped:
			for {
				select {
				case e := <-s.buf:
					if !send(e) {
						return false
					}
				default:
					return true
				}
			}
		case <-ctx.Done():
			return false
		}
	}
}

// run is the shared reader; it returns when no subscriber is left.
func (t *Tail) run() {
	ctx := context.Background()
	backoff := 100 * time.Millisecond
	for {
		wake := t.hub.Wait()
		t.mu.Lock()
		if len(t.subs) == 0 {
			t.running = false
			t.mu.Unlock()
			return
		}
		from := t.last
		t.mu.Unlock()
		t.reads.Add(1)
		evs, err := Page(ctx, t.client, from, MaxPage, Filter{})
		if err != nil {
			if t.log != nil {
				t.log.Warn("event tail read failed; retrying", "after", from, "err", err)
			}
			time.Sleep(backoff)
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		t.mu.Lock()
		for _, e := range evs {
			for s := range t.subs {
				if e.Seq <= s.cursor || !s.f.matches(e) {
					continue
				}
				select {
				case s.buf <- e:
					s.cursor = e.Seq
				default:
					// Fell behind: never block the others; it replays from the table.
					delete(t.subs, s)
					close(s.dropped)
					t.drops.Add(1)
				}
			}
		}
		if len(evs) > 0 {
			t.last = max(t.last, evs[len(evs)-1].Seq)
		}
		t.mu.Unlock()
		if len(evs) == MaxPage {
			continue
		}
		select {
		case <-wake:
		case <-time.After(2 * time.Second): // safety net should a notification be lost
		}
	}
}
