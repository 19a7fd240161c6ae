package events

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/event"
	"github.com/prybar/prybar/ent/predicate"
)

// Filter narrows a feed. Empty lists match everything; lists are ORed within and ANDed across.
type Filter struct {
	Kinds      []string
	SiteIDs    []int
	RackIDs    []int
	MachineIDs []int
}

func (f Filter) predicates() []predicate.Event {
	var ps []predicate.Event
	if len(f.Kinds) > 0 {
		ps = append(ps, event.KindIn(f.Kinds...))
	}
	if len(f.SiteIDs) > 0 {
		ps = append(ps, event.SiteIDIn(f.SiteIDs...))
	}
	if len(f.RackIDs) > 0 {
		ps = append(ps, event.RackIDIn(f.RackIDs...))
	}
	if len(f.MachineIDs) > 0 {
		ps = append(ps, event.MachineIDIn(f.MachineIDs...))
	}
	return ps
}

// MaxPage bounds one read of the log.
const MaxPage = 1000

// Page returns up to first events with seq > after, in seq order.
func Page(ctx context.Context, client *ent.Client, after int64, first int, f Filter) ([]*ent.Event, error) {
	if first <= 0 || first > MaxPage {
		first = MaxPage
	}
	return client.Event.Query().
		Where(append(f.predicates(), event.SeqGT(after))...).
		Order(ent.Asc(event.FieldSeq)).
		Limit(first).
		All(ctx)
}

// LastSeq returns the newest seq in the log (0 when empty).
func LastSeq(ctx context.Context, client *ent.Client) (int64, error) {
	return lastSeq(ctx, client)
}

// Stream delivers every event matching f with seq > after, in seq order, first the backlog then
// live, until ctx ends. The channel closes when ctx is done.
func Stream(ctx context.Context, client *ent.Client, hub *Hub, after int64, f Filter, log *slog.Logger) <-chan *ent.Event {
	out := make(chan *ent.Event, 64)
	go func() {
		defer close(out)
		cursor, backoff := after, 100*time.Millisecond
		for {
			// Take the wait channel before reading: a commit between the read and the wait then
			// still wakes us, so no event is left unread until the next poke.
			wake := hub.Wait()
			evs, err := Page(ctx, client, cursor, MaxPage, f)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if log != nil {
					log.Warn("event stream read failed; retrying", "after", cursor, "err", err)
				}
				select {
				case <-time.After(backoff):
					backoff = min(backoff*2, 5*time.Second)
					continue
				case <-ctx.Done():
					return
				}
			}
			backoff = 100 * time.Millisecond
			if len(evs) > 0 && evs[0].Seq > cursor+1 {
				// A gap: normal under a filter, but it may also be retention pruning past a slow
				// reader. Never deliver across a pruned range.
				if err := CheckResume(ctx, client, cursor); err != nil {
					if log != nil {
						log.Warn("event stream ends: its position was pruned", "after", cursor, "err", err)
					}
					return
				}
			}
			for _, e := range evs {
				select {
				case out <- e:
					cursor = e.Seq
				case <-ctx.Done():
					return
				}
			}
			if len(evs) == MaxPage {
				continue
			}
			select {
			case <-wake:
			case <-time.After(2 * time.Second): // safety net should a notification be lost
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// ResyncRequiredError says that a reader asked for events after a seq that retention has already
// pruned: the events between After and OldestSeq are gone, so resuming would leave a gap. The
// reader must re-read the state it mirrors and resume from a current seq (or from OldestSeq-1 if
// it accepts the gap knowingly).
type ResyncRequiredError struct {
	After     int64 // the seq the reader resumed from
	OldestSeq int64 // the oldest event still kept
}

// ResyncRequiredCode is the GraphQL error extension code of ResyncRequiredError.
const ResyncRequiredCode = "RESYNC_REQUIRED"

func (e *ResyncRequiredError) Error() string {
	return fmt.Sprintf("events after seq %d have been pruned (the oldest kept is seq %d): resync required", e.After, e.OldestSeq)
}

// Extensions are the GraphQL error extensions: code RESYNC_REQUIRED and oldestSeq.
func (e *ResyncRequiredError) Extensions() map[string]any {
	return map[string]any{"code": ResyncRequiredCode, "oldestSeq": e.OldestSeq}
}

// CheckResume returns a *ResyncRequiredError when events with seq > after were pruned. after = 0
// means "from the oldest kept" and is always valid. seq starts at 1 and has no gaps, so an oldest
// seq above after+1 means events were pruned.
func CheckResume(ctx context.Context, client *ent.Client, after int64) error {
	if after <= 0 {
		return nil
	}
	first, err := client.Event.Query().Order(ent.Asc(event.FieldSeq)).Select(event.FieldSeq).First(ctx)
	if ent.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if first.Seq > after+1 {
		return &ResyncRequiredError{After: after, OldestSeq: first.Seq}
	}
	return nil
}
