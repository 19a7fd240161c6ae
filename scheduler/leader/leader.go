// Package leader elects the one Prybar server that runs the scheduler when several share a
// PostgreSQL database. The leader holds a session-level advisory lock on a dedicated connection:
// PostgreSQL releases it the moment that connection ends (process killed, network cut, server
// restarted), so another server's next attempt — every sweep, about once a second — takes over.
//
// Elector implements gocron's Elector (IsLeader(ctx) error) and is wired into the annealer's
// gocron scheduler with gocron.WithDistributedElector. On SQLite there is only one server, and the
// annealer runs without an elector (always leader).
package leader

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Key is the advisory lock key of the scheduler ("prybar-scheduler"); it differs from the event
// outbox's transaction-scoped key so the two never contend.
const Key int64 = 0x70727962617253

// ErrNotLeader is returned by IsLeader when another server holds the lock.
var ErrNotLeader = errors.New("leader: another server runs the scheduler")

// Elector holds (or tries to take) the scheduler lock.
type Elector struct {
	dsn string
	key int64

	mu   sync.Mutex
	conn *pgx.Conn // non-nil while leading
	term uint64
}

// New returns an elector for the PostgreSQL database at dsn. It connects lazily.
func New(dsn string) *Elector { return &Elector{dsn: dsn, key: Key} }

// WithKey returns a copy using another lock key (tests running several clusters in one database).
func (e *Elector) WithKey(k int64) *Elector { return &Elector{dsn: e.dsn, key: k} }

// IsLeader returns nil when this process holds the lock: it checks that the lock's connection is
// still alive (a dead connection means PostgreSQL has already released the lock, and another
// server may hold it), and otherwise tries to take the lock on a fresh connection.
func (e *Elector) IsLeader(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn != nil {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := e.conn.Ping(pctx)
		cancel()
		if err == nil {
			return nil
		}
		// Lost it: the lock went with the connection.
		e.conn.Close(context.Background())
		e.conn = nil
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, e.dsn)
	if err != nil {
		return fmt.Errorf("leader: connect: %w", err)
	}
	var got bool
	if err := conn.QueryRow(cctx, "SELECT pg_try_advisory_lock($1)", e.key).Scan(&got); err != nil {
		conn.Close(context.Background())
		return fmt.Errorf("leader: try lock: %w", err)
	}
	if !got {
		conn.Close(context.Background())
		return ErrNotLeader
	}
	e.conn = conn
	e.term++
	return nil
}

// Term counts the leadership terms this elector has won; the annealer recovers interrupted runs
// at the start of each term.
func (e *Elector) Term() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.term
}

// Leading reports whether the elector currently believes it holds the lock (without checking).
func (e *Elector) Leading() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.conn != nil
}

// Check is the fence: it returns nil only when this elector holds the lock at this moment, which it
// confirms with a round trip on the lock's own connection. A process that stalled (SIGSTOP, a long
// GC pause, a partition) and lost the connection meanwhile learns it here before it acts: the
// annealer calls Check before every external effect and before recording completions, so a
// deposed leader applies nothing and records nothing once a follower may have taken over.
func (e *Elector) Check(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn == nil {
		return ErrNotLeader
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := e.conn.Ping(pctx); err != nil {
		e.conn.Close(context.Background())
		e.conn = nil
		return fmt.Errorf("%w: the lock connection is gone (%v)", ErrNotLeader, err)
	}
	return nil
}

// Resign releases the lock by closing its connection: a stopping server calls it first, so a
// follower takes over at its next attempt instead of after the stopping one has drained (tests
// also use it to simulate a dying leader).
func (e *Elector) Resign() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn != nil {
		e.conn.Close(context.Background())
		e.conn = nil
	}
}
