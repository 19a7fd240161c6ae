// Package leader elects the one Prybar server that runs the scheduler when several share a
// PostgreSQL database. The leader holds a session-level advisory lock on a dedicated connection:
// PostgreSQL releases it the moment that connection ends (process killed, network cut, server
// restarted), so another server's next attempt — every sweep, about once a second — takes over.
//
// Elector implements gocron's Elector (IsLeader(ctx) error) and is wired into the annealer's
// gocron scheduler with gocron.WithDistributedElector. On SQLite there is only one server, and the
// annealer runs without an elector (always leader).
//
// Every acquisition bumps the lock's epoch, a number kept in the prybar_leader_epochs table
// (one row per lock key) and increased in the lock's own connection right after the lock is
// granted: epochs are monotonic across processes and restarts, and the holder of the lock is
// the only writer of its row. The annealer stamps each run with the epoch it was claimed under
// and, inside the transactions that claim and complete runs, reads the row FOR SHARE and refuses
// to write when it differs from its own (Fenced): a new leader's bump waits for such a
// transaction, so a deposed leader's write is either ordered before the new leader's recovery or
// refused.
package leader

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Key is the advisory lock key of the scheduler ("prybar-scheduler"); it differs from the event
// outbox's transaction-scoped key so the two never contend.
const Key int64 = 0x70727962617253

// ErrNotLeader is returned by IsLeader when another server holds the lock.
var ErrNotLeader = errors.New("leader: another server runs the scheduler")

// EpochTable is the table holding each lock key's epoch. It is created on first use (it belongs
// to the lock protocol, not to the ent schema, and exists only on PostgreSQL).
const EpochTable = "prybar_leader_epochs"

const createEpochTable = `CREATE TABLE IF NOT EXISTS ` + EpochTable + ` (
	lock_key    bigint PRIMARY KEY,
	epoch       bigint NOT NULL,
	holder      text NOT NULL DEFAULT '',
	acquired_at timestamptz NOT NULL DEFAULT now())`

const bumpEpoch = `INSERT INTO ` + EpochTable + ` (lock_key, epoch, holder, acquired_at) VALUES ($1, 1, $2, now())
	ON CONFLICT (lock_key) DO UPDATE SET epoch = ` + EpochTable + `.epoch + 1, holder = EXCLUDED.holder, acquired_at = now()
	RETURNING epoch`

// EpochForShare reads a key's current epoch ($1) and share-locks its row until the transaction
// ends, so no new leader can bump it meanwhile. Writers fenced by the epoch run it first.
const EpochForShare = `SELECT epoch FROM ` + EpochTable + ` WHERE lock_key = $1 FOR SHARE`

// ErrFenced is returned when a transaction guarded by the epoch finds a newer one: another
// process took the lock after this one's epoch began.
var ErrFenced = errors.New("leader: a newer leader epoch exists")

// Elector holds (or tries to take) the scheduler lock.
type Elector struct {
	dsn    string
	key    int64
	holder string

	mu       sync.Mutex
	conn     *pgx.Conn // non-nil while leading
	term     uint64
	epoch    int64 // epoch of the current term (0 when not leading)
	resigned bool  // Resign was called: never lead again
}

// New returns an elector for the PostgreSQL database at dsn. It connects lazily.
func New(dsn string) *Elector { return &Elector{dsn: dsn, key: Key, holder: defaultHolder()} }

// WithKey returns a copy using another lock key (tests running several clusters in one database).
func (e *Elector) WithKey(k int64) *Elector { return &Elector{dsn: e.dsn, key: k, holder: e.holder} }

func defaultHolder() string {
	h, _ := os.Hostname()
	return fmt.Sprintf("%s/%d", h, os.Getpid())
}

// Key is the advisory lock key (and the epoch row) of this elector.
func (e *Elector) Key() int64 { return e.key }

// Epoch returns the epoch of the current leadership term, or 0 when not leading.
func (e *Elector) Epoch() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn == nil {
		return 0
	}
	return e.epoch
}

// IsLeader returns nil when this process holds the lock: it checks that the lock's connection is
// still alive (a dead connection means PostgreSQL has already released the lock, and another
// server may hold it), and otherwise tries to take the lock on a fresh connection.
func (e *Elector) IsLeader(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.resigned {
		return ErrNotLeader
	}
	if e.conn != nil {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := e.conn.Ping(pctx)
		cancel()
		if err == nil {
			return nil
		}
		// Lost it: the lock went with the connection.
		e.conn.Close(context.Background())
		e.conn, e.epoch = nil, 0
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
	// A new epoch, written on the lock's connection while the lock is held: the only writer.
	epoch, err := bump(cctx, conn, e.dsn, e.key, e.holder)
	if err != nil {
		conn.Close(context.Background())
		return fmt.Errorf("leader: new epoch: %w", err)
	}
	e.conn, e.epoch = conn, epoch
	e.term++
	return nil
}

func bump(ctx context.Context, conn *pgx.Conn, dsn string, key int64, holder string) (int64, error) {
	epoch, err := bumpFenced(ctx, conn, dsn, key, holder)
	if err == nil {
		return epoch, nil
	}
	// First use: create the table. Two electors with different keys may race on CREATE TABLE IF
	// NOT EXISTS (PostgreSQL can then report a duplicate type); the retry sees the table.
	for attempt := 0; attempt < 3 && ctx.Err() == nil; attempt++ {
		if _, cerr := conn.Exec(ctx, createEpochTable); cerr != nil {
			err = cerr
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if epoch, err = bumpFenced(ctx, conn, dsn, key, holder); err == nil {
			return epoch, nil
		}
	}
	return 0, err
}

// BumpGrace is how long a new leader's epoch bump waits for transactions that hold the epoch row
// before it ends them.
var BumpGrace = time.Second

// bumpFenced bumps the epoch. Only leaders' claim and completion transactions lock the epoch row
// (FOR SHARE, as their first statement), and this process holds the lock now, so a transaction
// that holds the row past BumpGrace belongs to a deposed leader that stalled mid-transaction
// (SIGSTOP, a partition): it would block the bump — and the takeover — until that process
// resumed. Its backend is terminated instead (its transaction rolls back), which is the fence at
// the database: nothing the stalled leader had begun commits.
func bumpFenced(ctx context.Context, conn *pgx.Conn, dsn string, key int64, holder string) (int64, error) {
	type result struct {
		epoch int64
		err   error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		r.err = conn.QueryRow(ctx, bumpEpoch, key, holder).Scan(&r.epoch)
		done <- r
	}()
	t := time.NewTimer(BumpGrace)
	defer t.Stop()
	select {
	case r := <-done:
		return r.epoch, r.err
	case <-t.C:
	}
	if killer, err := pgx.Connect(ctx, dsn); err == nil {
		_, _ = killer.Exec(ctx, `SELECT pg_terminate_backend(b) FROM unnest(pg_blocking_pids($1)) AS b`, int32(conn.PgConn().PID()))
		killer.Close(context.Background())
	}
	r := <-done // bounded by ctx
	return r.epoch, r.err
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

// Check is the fence: it returns nil only when this elector holds the lock at this moment and its
// epoch is still the current one, which it confirms by reading the epoch row on the lock's own
// connection (one round trip). A process that stalled (SIGSTOP, a long GC pause, a partition) and
// lost the connection meanwhile learns it here before it acts: the annealer calls Check before
// every external effect and before recording completions, so a deposed leader applies nothing and
// records nothing once a follower may have taken over.
func (e *Elector) Check(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn == nil {
		return ErrNotLeader
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var cur int64
	if err := e.conn.QueryRow(pctx, `SELECT epoch FROM `+EpochTable+` WHERE lock_key = $1`, e.key).Scan(&cur); err != nil {
		e.conn.Close(context.Background())
		e.conn, e.epoch = nil, 0
		return fmt.Errorf("%w: the lock connection is gone (%v)", ErrNotLeader, err)
	}
	if cur != e.epoch {
		// Cannot happen while the lock is held (only the holder bumps); refuse rather than act.
		mine := e.epoch
		e.conn.Close(context.Background())
		e.conn, e.epoch = nil, 0
		return fmt.Errorf("%w: epoch %d is current, this process leads epoch %d", ErrFenced, cur, mine)
	}
	return nil
}

// Resign releases the lock by closing its connection and never takes it again: a stopping server
// calls it first, so a follower takes over at its next attempt instead of after the stopping one
// has drained (tests also use it to simulate a dying leader).
func (e *Elector) Resign() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.resigned = true
	if e.conn != nil {
		// Unlock before closing: the server frees a closed session's locks only when its backend
		// gets round to the disconnect, so a successor asking at once could still be refused
		// (TestEpochIncreasesOnEveryAcquisition failed so, about once in a CI run).
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, _ = e.conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", e.key)
		cancel()
		e.conn.Close(context.Background())
		e.conn, e.epoch = nil, 0
	}
}
