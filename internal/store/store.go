// Package store opens Prybar's database (SQLite by default, PostgreSQL for production and several
// replicas), migrates the schema at start-up, and wires the hooks every write must pass through:
// inventory validation and the event outbox.
package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	_ "github.com/mattn/go-sqlite3"    // registers the "sqlite3" database/sql driver

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/internal/inventory"
	"github.com/prybar/prybar/internal/secret"
)

// DefaultDSN is the zero-setup database: a SQLite file in the working directory.
const DefaultDSN = "prybar.db"

// Store is an open database with its ent client and event recorder.
type Store struct {
	Client  *ent.Client
	Dialect string // dialect.SQLite or dialect.Postgres
	DSN     string // as given (PostgreSQL DSNs are reused by the event listener)
	DB      *sql.DB
	Events  *events.Recorder
	Hub     *events.Hub
	Counter *Counter // counts SQL statements, for tests and benchmarks
	// SecretKey seals BMC passwords at rest (internal/secret); nil when none was configured.
	SecretKey []byte
}

// Options tune Open.
type Options struct {
	// SkipMigrate leaves the schema as found (for tools that only read).
	SkipMigrate bool
	// SecretKey, when set, makes every BMC password write go through internal/secret's sealing hook.
	SecretKey []byte
}

// Open connects to dsn ("", a file path, "sqlite://path", "file:…", or "postgres://…"), migrates the
// schema and installs the hooks.
func Open(ctx context.Context, dsn string, opts ...Options) (*Store, error) {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if dsn == "" {
		dsn = DefaultDSN
	}
	var (
		db   *sql.DB
		name string
		err  error
	)
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		name = dialect.Postgres
		db, err = sql.Open("pgx", dsn)
		if err == nil {
			db.SetMaxOpenConns(20)
		}
	default:
		name = dialect.SQLite
		db, err = sql.Open("sqlite3", sqliteDSN(dsn))
		if err == nil {
			// One writer at a time is SQLite's rule; immediate transactions queue on the busy timeout
			// instead of failing late with SQLITE_BUSY. Readers run concurrently under WAL.
			db.SetMaxOpenConns(8)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	counter := &Counter{Driver: entsql.OpenDB(name, db)}
	client := ent.NewClient(ent.Driver(counter))
	if !o.SkipMigrate {
		if err := client.Schema.Create(ctx); err != nil {
			client.Close()
			return nil, fmt.Errorf("migrate schema: %w", err)
		}
	}
	hub := events.NewHub()
	inventory.Install(client)
	if o.SecretKey != nil {
		if err := secret.CheckKey(ctx, client, o.SecretKey); err != nil {
			client.Close()
			return nil, err
		}
		if err := secret.Install(client, o.SecretKey); err != nil {
			client.Close()
			return nil, err
		}
	}
	rec := events.NewRecorder(client, name, hub)
	return &Store{Client: client, Dialect: name, DSN: dsn, DB: db, Events: rec, Hub: hub, Counter: counter, SecretKey: o.SecretKey}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.Client.Close() }

// Tx runs fn in a transaction that records events (see events.Recorder.Tx).
func (s *Store) Tx(ctx context.Context, fn func(ctx context.Context, tx *ent.Tx) error) error {
	return s.Events.Tx(ctx, fn)
}

func sqliteDSN(dsn string) string {
	path := strings.TrimPrefix(dsn, "sqlite://")
	// _stmt_cache_size keeps each connection's prepared statements for reuse: the same few
	// statements (the event log's last-seq read and appends, the DHCP server's lease upserts, ent's
	// common queries) run thousands of times, and preparing one costs as much as running it.
	params := "_fk=1&_journal_mode=WAL&_busy_timeout=15000&_txlock=immediate&_synchronous=NORMAL&_stmt_cache_size=128"
	if strings.HasPrefix(path, "file:") {
		if strings.Contains(path, "?") {
			return path + "&" + params
		}
		return path + "?" + params
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return "file:" + path + "?" + params
}

// SQLiteFile is the absolute path of the database file when the store is a SQLite file, and ""
// for PostgreSQL or an in-memory database.
func (s *Store) SQLiteFile() string {
	if s.Dialect != dialect.SQLite {
		return ""
	}
	dsn := s.DSN
	if dsn == "" {
		dsn = DefaultDSN
	}
	path := strings.TrimPrefix(dsn, "sqlite://")
	if rest, ok := strings.CutPrefix(path, "file:"); ok {
		var query string
		path, query, _ = strings.Cut(rest, "?")
		if strings.Contains(query, "mode=memory") {
			return ""
		}
	}
	if path == "" || path == ":memory:" {
		return ""
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return ""
	}
	return abs
}

// Describe returns a log-safe description of dsn (no password).
func Describe(dsn string) string {
	if dsn == "" {
		dsn = DefaultDSN
	}
	if strings.HasPrefix(dsn, "postgres") {
		if i := strings.Index(dsn, "@"); i >= 0 {
			if j := strings.Index(dsn, "://"); j >= 0 {
				return dsn[:j+3] + "…" + dsn[i:]
			}
		}
		return dsn
	}
	if _, err := os.Stat(dsn); err == nil {
		if abs, err := filepath.Abs(dsn); err == nil {
			return "sqlite:" + abs
		}
	}
	return "sqlite:" + dsn
}
