package leader

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// InstanceClass is the first key of the two-key advisory locks that mark live server instances
// ("pryi"); the second key is the instance number.
const InstanceClass int32 = 0x70727969

// InstanceTable numbers server instances; created on first use, PostgreSQL only.
const InstanceTable = "prybar_instances"

const createInstanceTable = `CREATE TABLE IF NOT EXISTS ` + InstanceTable + ` (
	id         bigserial PRIMARY KEY,
	name       text NOT NULL DEFAULT '',
	started_at timestamptz NOT NULL DEFAULT now())`

// Instance is one running server process on a shared PostgreSQL database: a number that is never
// reused (the owner epoch of what it starts) and a session-level advisory lock on that number,
// held on a dedicated connection for the life of the process. PostgreSQL drops the lock when the
// connection ends — the process was killed, crashed, or was cut off — so "the owner holds its
// lock" is the liveness test for anything the instance owns (tracked operations): unlike an age
// rule, a quick restart settles a dead predecessor's work at once, and a slow but live owner is
// never robbed.
type Instance struct {
	id   int64
	name string

	mu   sync.Mutex
	conn *pgx.Conn
}

// Register numbers this process and takes its liveness lock. name is informational (host/pid).
func Register(ctx context.Context, dsn, name string) (*Instance, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("instance: connect: %w", err)
	}
	var id int64
	err = conn.QueryRow(cctx, `INSERT INTO `+InstanceTable+` (name) VALUES ($1) RETURNING id`, name).Scan(&id)
	for attempt := 0; err != nil && attempt < 3; attempt++ {
		// First use (two servers starting at once may race on CREATE TABLE IF NOT EXISTS; the
		// retry sees the table).
		if _, cerr := conn.Exec(cctx, createInstanceTable); cerr != nil {
			err = cerr
			time.Sleep(50 * time.Millisecond)
			continue
		}
		err = conn.QueryRow(cctx, `INSERT INTO `+InstanceTable+` (name) VALUES ($1) RETURNING id`, name).Scan(&id)
	}
	if err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("instance: number this server: %w", err)
	}
	if id > 1<<31-1 {
		conn.Close(context.Background())
		return nil, fmt.Errorf("instance: number %d does not fit an advisory lock key; reset the %s sequence", id, InstanceTable)
	}
	// Nobody else ever locks this number (it is new), so this does not wait.
	if _, err := conn.Exec(cctx, `SELECT pg_advisory_lock($1, $2)`, InstanceClass, int32(id)); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("instance: liveness lock: %w", err)
	}
	return &Instance{id: id, name: name, conn: conn}, nil
}

// ID is the instance number: the owner epoch stamped on what this process owns.
func (i *Instance) ID() int64 { return i.id }

// Name is the name given to Register.
func (i *Instance) Name() string { return i.name }

// Check returns nil while this instance still holds its liveness lock (one round trip on the
// lock's connection). Once it fails, other servers may already have settled what it owns.
func (i *Instance) Check(ctx context.Context) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.conn == nil {
		return fmt.Errorf("instance %d: liveness lock released", i.id)
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := i.conn.Ping(pctx); err != nil {
		i.conn.Close(context.Background())
		i.conn = nil
		return fmt.Errorf("instance %d: liveness lock lost: %w", i.id, err)
	}
	return nil
}

// Close releases the liveness lock (the process is stopping: what it owns is settled by then).
func (i *Instance) Close() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.conn != nil {
		i.conn.Close(context.Background())
		i.conn = nil
	}
}

// LiveInstancesQuery lists the instance numbers whose liveness lock is held in the current
// database (pg_locks shows every database's locks).
const LiveInstancesQuery = `SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted
	AND objsubid = 2 AND classid::bigint = $1
	AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`
