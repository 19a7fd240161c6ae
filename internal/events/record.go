package events

import (
	"context"
	stdsql "database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"entgo.io/ent/dialect"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/internal/multirow"
)

// advisoryKey is the PostgreSQL advisory lock that serializes event appends ("prybar" in ASCII).
const advisoryKey = 0x707279626172

// NotifyChannel is the PostgreSQL channel on which commits announce new events.
const NotifyChannel = "prybar_events"

type ctxKey int

const (
	bufferKey ctxKey = iota
	actorKey
	untrackedKey
)

// WithActor names who makes the changes written with ctx (a user, "scheduler", "fixtures" …).
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey, actor)
}

// Untracked marks ctx's writes as bookkeeping that is not a change-feed event (e.g. a token's
// last-used time, updated on every request): they need no events.Tx.
func Untracked(ctx context.Context) context.Context {
	return context.WithValue(ctx, untrackedKey, true)
}

// Actor returns the actor set by WithActor, or "system".
func Actor(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey).(string); ok && a != "" {
		return a
	}
	return "system"
}

// pending is an event not yet written.
type pending struct {
	kind, objectType string
	objectID         int
	loc              location
	located          bool
	// locType/locID, when set, are what the event is located by (Emit's machine) instead of
	// objectType/objectID.
	locType string
	locID   int
	changes map[string]any
	raw     []byte // changes already encoded (EmitJSONAt); used when changes is empty
	at      time.Time
	actor   string
}

type buffer struct {
	mu     sync.Mutex
	events []*pending
}

func (b *buffer) add(p *pending) {
	b.mu.Lock()
	b.events = append(b.events, p)
	b.mu.Unlock()
}

// ErrNoTx is returned by the hook for a mutation written outside Tx: such a change could commit
// without its event, which would break every subscriber's view.
var ErrNoTx = errors.New("events: mutation outside events.Tx (every write must go through events.Tx)")

// Recorder installs the outbox hook on a client and runs transactions that append events.
type Recorder struct {
	client  *ent.Client
	dialect string
	hub     *Hub
}

// NewRecorder installs the hook on client. hub is poked after every commit that wrote events.
func NewRecorder(client *ent.Client, dialectName string, hub *Hub) *Recorder {
	r := &Recorder{client: client, dialect: dialectName, hub: hub}
	client.Use(r.hook)
	return r
}

// Hub returns the recorder's hub.
func (r *Recorder) Hub() *Hub { return r.hub }

// Tx runs fn in a transaction whose changes are appended to the event log atomically. If fn returns
// an error (including a domain error) the transaction rolls back and nothing is written.
func (r *Recorder) Tx(ctx context.Context, fn func(ctx context.Context, tx *ent.Tx) error) (err error) {
	tx, err := r.client.Tx(ctx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	buf := &buffer{}
	ctx = context.WithValue(ctx, bufferKey, buf)
	tx.OnCommit(func(next ent.Committer) ent.Committer {
		return ent.CommitFunc(func(ctx context.Context, tx *ent.Tx) error {
			n, err := r.flush(ctx, tx, buf)
			if err != nil {
				return err
			}
			if err := next.Commit(ctx, tx); err != nil {
				return err
			}
			if n > 0 && r.hub != nil {
				r.hub.Poke()
			}
			return nil
		})
	})
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
	}()
	if err := fn(ctx, tx); err != nil {
		if rerr := tx.Rollback(); rerr != nil {
			return fmt.Errorf("%w (rollback: %v)", err, rerr)
		}
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (r *Recorder) hook(next ent.Mutator) ent.Mutator {
	return ent.MutateFunc(func(ctx context.Context, m ent.Mutation) (ent.Value, error) {
		// BMCSession is the Redfish session journal: process-internal bookkeeping, not in the
		// API, so its writes are not change-feed events and need no events.Tx.
		// Sessions and token last-used stamps are the same kind of bookkeeping (internal/auth
		// emits the audit events for sign-in and token use itself).
		if m.Type() == "Event" || m.Type() == "BMCSession" || m.Type() == "Session" || ctx.Value(untrackedKey) != nil {
			return next.Mutate(ctx, m)
		}
		buf, _ := ctx.Value(bufferKey).(*buffer)
		tm, ok := m.(interface{ Tx() (*ent.Tx, error) })
		if buf == nil || !ok {
			return nil, fmt.Errorf("%w: %s %s", ErrNoTx, strings.ToLower(m.Op().String()), m.Type())
		}
		tx, err := tm.Tx()
		if err != nil {
			return nil, fmt.Errorf("%w: %s %s", ErrNoTx, strings.ToLower(m.Op().String()), m.Type())
		}
		typ := strings.ToLower(m.Type())
		changes := changedFields(m)
		actor, now := Actor(ctx), time.Now()

		var ids []int
		if !m.Op().Is(ent.OpCreate) {
			idm, ok := m.(interface {
				IDs(context.Context) ([]int, error)
			})
			if ok {
				if ids, err = idm.IDs(ctx); err != nil {
					return nil, err
				}
			}
		}
		var locs map[int]location
		if m.Op().Is(ent.OpDelete | ent.OpDeleteOne) {
			// Locate before the row disappears.
			if locs, err = locate(ctx, tx, typ, ids); err != nil {
				return nil, err
			}
		}
		v, err := next.Mutate(ctx, m)
		if err != nil {
			return v, err
		}
		kind := typ + "." + opVerb(m.Op())
		if typ == "noderole" && changes["state"] != nil && m.Op().Is(ent.OpUpdate|ent.OpUpdateOne) {
			kind = "noderole.state"
		}
		if m.Op().Is(ent.OpCreate) {
			// ent stores the new id in the mutation once the row exists (bulk creates too).
			if idm, ok := m.(interface{ ID() (int, bool) }); ok {
				if id, ok := idm.ID(); ok {
					ids = []int{id}
				}
			}
		}
		for _, id := range ids {
			p := &pending{kind: kind, objectType: typ, objectID: id, changes: changes, at: now, actor: actor}
			if locs != nil {
				p.loc, p.located = locs[id], true
			}
			buf.add(p)
		}
		return v, nil
	})
}

func opVerb(op ent.Op) string {
	switch {
	case op.Is(ent.OpCreate):
		return "created"
	case op.Is(ent.OpDelete | ent.OpDeleteOne):
		return "deleted"
	default:
		return "updated"
	}
}

// sensitive fields are recorded as changed but never with their value.
var sensitive = map[string]bool{"password": true, "password_hash": true, "hash": true}

func changedFields(m ent.Mutation) map[string]any {
	out := map[string]any{}
	for _, f := range m.Fields() {
		v, _ := m.Field(f)
		if sensitive[f] {
			v = "<redacted>"
		}
		if f == "updated_at" || f == "created_at" {
			continue // every change touches them; the event has its own time
		}
		out[f] = v
	}
	for _, f := range m.ClearedFields() {
		out[f] = nil
	}
	for _, e := range m.AddedEdges() {
		if ids := m.AddedIDs(e); len(ids) > 0 {
			out["+"+e] = ids
		}
	}
	for _, e := range m.RemovedEdges() {
		if ids := m.RemovedIDs(e); len(ids) > 0 {
			out["-"+e] = ids
		}
	}
	return out
}

func (r *Recorder) flush(ctx context.Context, tx *ent.Tx, buf *buffer) (int, error) {
	buf.mu.Lock()
	evs := buf.events
	buf.events = nil
	buf.mu.Unlock()
	if len(evs) == 0 {
		return 0, nil
	}
	if err := locateAll(ctx, tx, evs); err != nil {
		return 0, fmt.Errorf("events: locate: %w", err)
	}
	if r.dialect == dialect.Postgres {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", advisoryKey); err != nil {
			return 0, fmt.Errorf("events: lock: %w", err)
		}
	}
	maxSeq, err := lastSeq(ctx, tx)
	if err != nil {
		return 0, fmt.Errorf("events: read last seq: %w", err)
	}
	if err := insertEvents(ctx, tx, r.dialect, maxSeq, evs); err != nil {
		return 0, fmt.Errorf("events: append: %w", err)
	}
	if r.dialect == dialect.Postgres {
		if _, err := tx.ExecContext(ctx, "SELECT pg_notify($1, $2)", NotifyChannel, fmt.Sprint(maxSeq+int64(len(evs)))); err != nil {
			return 0, fmt.Errorf("events: notify: %w", err)
		}
	}
	return len(evs), nil
}

// eventColumns are the columns insertEvents writes (id is the database's).
const eventColumns = `"seq", "time", "actor", "kind", "object_type", "object_id", "site_id", "rack_id", "machine_id", "changes"`

// insertChunk bounds the rows of one INSERT: 10 parameters a row stays under SQLite's bound-parameter
// limit (32,766) and PostgreSQL's (65,535).
const insertChunk = 500

// eventInsert is insertEvents' statement.
var eventInsert = multirow.NewInsert("INSERT INTO events ("+eventColumns+")", 10, "")

// insertEvents appends evs with seq maxSeq+1, maxSeq+2 … in multi-row INSERTs (of the sizes
// multirow.Chunks gives, which the driver's statement cache keeps). Plain SQL, not
// ent's bulk create: no hook has anything to do for an event row, and the builders, mutations and
// the RETURNING of ids cost several times the insert itself when a busy writer (the DHCP server's
// group commits) appends hundreds of events a second. The values are bound exactly as ent binds
// them (time.Time, the changes as JSON bytes, NULL for an unset location or no changes), so rows
// read back the same either way.
func insertEvents(ctx context.Context, tx *ent.Tx, dialectName string, maxSeq int64, evs []*pending) error {
	for start, end := range multirow.Chunks(len(evs), insertChunk) {
		part := evs[start:end]
		args := make([]any, 0, len(part)*10)
		for i, p := range part {
			var changes any
			if len(p.changes) > 0 {
				b, err := marshalChanges(p.changes)
				if err != nil {
					return fmt.Errorf("marshal changes of %s: %w", p.kind, err)
				}
				changes = json.RawMessage(b)
			} else if len(p.raw) > 0 {
				changes = json.RawMessage(p.raw)
			}
			args = append(args, maxSeq+int64(start+i)+1, p.at, p.actor, p.kind, p.objectType, p.objectID,
				p.loc.site, p.loc.rack, p.loc.machine, changes)
		}
		if _, err := tx.ExecContext(ctx, eventInsert.SQL(dialectName, len(part)), args...); err != nil {
			return err
		}
	}
	return nil
}

// querier is what lastSeq reads through: a transaction or the client.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*stdsql.Rows, error)
}

// lastSeq reads the highest seq (0 when the log is empty) through the unique index on seq.
func lastSeq(ctx context.Context, db querier) (int64, error) {
	rows, err := db.QueryContext(ctx, "SELECT seq FROM events ORDER BY seq DESC LIMIT 1")
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var seq int64
	if rows.Next() {
		if err := rows.Scan(&seq); err != nil {
			return 0, err
		}
	}
	return seq, rows.Err()
}
