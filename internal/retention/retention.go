// Package retention prunes the change feed (events) and the annealer's run history (runs), which
// otherwise grow without bound on a long-running server.
//
// Pruning runs as a gocron job on the leader only (PostgreSQL: an advisory-lock elector of its own,
// so exactly one replica prunes; SQLite: the one server). Rules:
//
//   - events: an event is deleted when it is older than EventMaxAge or not among the newest
//     EventMaxCount. The newest event is always kept, because the next seq is max(seq)+1 and a
//     gapless, never-reused seq is what resuming subscribers rely on.
//   - runs: a finished run (not RUNNING) is deleted when it started before RunMaxAge or is not among
//     the newest RunMaxCount; the newest run of every node-role is always kept, so each node-role
//     still shows how it got to its state.
//
// After deleting, SQLite reclaims pages (PRAGMA incremental_vacuum when the database uses
// auto_vacuum=INCREMENTAL, else VACUUM once a prune deleted at least VacuumAfter rows);
// PostgreSQL's autovacuum reclaims space, and an ANALYZE keeps the planner's row counts right.
//
// A reader resuming from a seq older than the oldest kept event gets events.ResyncRequiredError
// (GraphQL code RESYNC_REQUIRED with oldestSeq), never a silent gap.
package retention

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"entgo.io/ent/dialect"
	"github.com/go-co-op/gocron/v2"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/event"
	"github.com/prybar/prybar/ent/run"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/scheduler/leader"
)

// Key is the advisory lock key electing the replica that prunes ("prybar-retention" shortened);
// it differs from the scheduler's so the two elections never contend inside one process.
const Key int64 = 0x70727962617252

// Options configures retention. Zero values take the defaults below; a negative value disables
// that rule.
type Options struct {
	EventMaxAge   time.Duration // default 30 days
	EventMaxCount int           // default 1,000,000
	RunMaxAge     time.Duration // default 30 days
	RunMaxCount   int           // default 100,000
	Every         time.Duration // how often the job runs; default 1 hour
	VacuumAfter   int           // SQLite: VACUUM after a prune deleting at least this many rows; default 50,000

	err error // a malformed environment variable seen by Flags; Start reports it
}

// Defaults.
const (
	DefaultMaxAge      = 30 * 24 * time.Hour
	DefaultEventCount  = 1_000_000
	DefaultRunCount    = 100_000
	DefaultEvery       = time.Hour
	DefaultVacuumAfter = 50_000
)

func (o Options) withDefaults() Options {
	if o.EventMaxAge == 0 {
		o.EventMaxAge = DefaultMaxAge
	}
	if o.EventMaxCount == 0 {
		o.EventMaxCount = DefaultEventCount
	}
	if o.RunMaxAge == 0 {
		o.RunMaxAge = DefaultMaxAge
	}
	if o.RunMaxCount == 0 {
		o.RunMaxCount = DefaultRunCount
	}
	if o.Every <= 0 {
		o.Every = DefaultEvery
	}
	if o.VacuumAfter == 0 {
		o.VacuumAfter = DefaultVacuumAfter
	}
	return o
}

// Result says what one prune deleted.
type Result struct {
	Events, Runs int64
	Vacuumed     bool
}

// Prune applies the rules once, at time now.
func Prune(ctx context.Context, st *store.Store, o Options, now time.Time) (Result, error) {
	o = o.withDefaults()
	var res Result
	var err error
	if res.Events, err = pruneEvents(ctx, st, o, now); err != nil {
		return res, fmt.Errorf("retention: events: %w", err)
	}
	if res.Runs, err = pruneRuns(ctx, st, o, now); err != nil {
		return res, fmt.Errorf("retention: runs: %w", err)
	}
	if res.Events+res.Runs == 0 {
		return res, nil
	}
	res.Vacuumed, err = reclaim(ctx, st, int(res.Events+res.Runs), o.VacuumAfter)
	if err != nil {
		return res, fmt.Errorf("retention: reclaim: %w", err)
	}
	return res, nil
}

// maxOf returns the largest int column value (0 when there are no rows).
func maxOf(ctx context.Context, db *sql.DB, q string, args ...any) (int64, error) {
	var v sql.NullInt64
	if err := db.QueryRowContext(ctx, q, args...).Scan(&v); err != nil {
		return 0, err
	}
	return v.Int64, nil
}

func pruneEvents(ctx context.Context, st *store.Store, o Options, now time.Time) (int64, error) {
	newest, err := maxOf(ctx, st.DB, "SELECT MAX(seq) FROM events")
	if err != nil || newest == 0 {
		return 0, err
	}
	// seq is gapless at the top, so "not among the newest N" is seq <= newest-N.
	through := int64(0)
	if o.EventMaxCount > 0 {
		through = max(through, newest-int64(o.EventMaxCount))
	}
	if o.EventMaxAge > 0 {
		// The time comparison goes through ent so the parameter is encoded exactly as the column
		// was written. seq is commit order, so everything up to the newest old seq is old.
		old, err := st.Client.Event.Query().Where(event.TimeLT(now.Add(-o.EventMaxAge))).
			Order(ent.Desc(event.FieldSeq)).Select(event.FieldSeq).First(ctx)
		if err != nil && !ent.IsNotFound(err) {
			return 0, err
		}
		if old != nil {
			through = max(through, old.Seq)
		}
	}
	through = min(through, newest-1) // never the newest: it carries the seq counter
	if through <= 0 {
		return 0, nil
	}
	r, err := st.DB.ExecContext(ctx, rebind(st.Dialect, "DELETE FROM events WHERE seq <= ?"), through)
	if err != nil {
		return 0, err
	}
	return r.RowsAffected()
}

func pruneRuns(ctx context.Context, st *store.Store, o Options, now time.Time) (int64, error) {
	through := int64(0)
	if o.RunMaxCount > 0 {
		// The (N+1)th newest id and everything older is out (NULL, so 0, when there are fewer).
		v, err := maxOf(ctx, st.DB, rebind(st.Dialect, "SELECT id FROM runs ORDER BY id DESC LIMIT 1 OFFSET ?"), o.RunMaxCount)
		if err != nil && err != sql.ErrNoRows {
			return 0, err
		}
		through = max(through, v)
	}
	if o.RunMaxAge > 0 {
		old, err := st.Client.Run.Query().Where(run.StartedAtLT(now.Add(-o.RunMaxAge))).
			Order(ent.Desc(run.FieldID)).FirstID(ctx)
		if err != nil && !ent.IsNotFound(err) {
			return 0, err
		}
		through = max(through, int64(old))
	}
	if through <= 0 {
		return 0, nil
	}
	// Raw SQL on purpose: runs are history, and deleting them must not write change-feed events
	// (the outbox hook would also refuse a write outside events.Tx).
	r, err := st.DB.ExecContext(ctx, rebind(st.Dialect, `DELETE FROM runs WHERE id <= ? AND status <> 'RUNNING'
		AND id NOT IN (SELECT MAX(id) FROM runs GROUP BY node_role_id)`), through)
	if err != nil {
		return 0, err
	}
	return r.RowsAffected()
}

func reclaim(ctx context.Context, st *store.Store, deleted, vacuumAfter int) (bool, error) {
	if st.Dialect == dialect.Postgres {
		_, err := st.DB.ExecContext(ctx, "ANALYZE events, runs")
		return false, err
	}
	var mode int
	if err := st.DB.QueryRowContext(ctx, "PRAGMA auto_vacuum").Scan(&mode); err != nil {
		return false, err
	}
	if mode == 2 { // INCREMENTAL: free pages go back to the file system cheaply
		_, err := st.DB.ExecContext(ctx, "PRAGMA incremental_vacuum")
		return err == nil, err
	}
	if vacuumAfter < 0 || deleted < vacuumAfter {
		return false, nil // SQLite reuses the free pages for new rows
	}
	_, err := st.DB.ExecContext(ctx, "VACUUM")
	return err == nil, err
}

// rebind turns ? placeholders into $n for PostgreSQL.
func rebind(d, q string) string {
	if d != dialect.Postgres {
		return q
	}
	out, n := make([]byte, 0, len(q)+8), 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			out = append(out, fmt.Sprintf("$%d", n)...)
			continue
		}
		out = append(out, q[i])
	}
	return string(out)
}

// Start schedules Prune every o.Every on a gocron scheduler, gated by leader election on
// PostgreSQL (SQLite has a single server). The returned stop function ends the scheduler.
func Start(ctx context.Context, st *store.Store, o Options, log *slog.Logger) (stop func(), err error) {
	if o.err != nil {
		return nil, o.err
	}
	o = o.withDefaults()
	if log == nil {
		log = slog.Default()
	}
	var sopts []gocron.SchedulerOption
	var el *leader.Elector
	if st.Dialect == dialect.Postgres {
		el = leader.New(st.DSN).WithKey(Key)
		sopts = append(sopts, gocron.WithDistributedElector(el))
	}
	s, err := gocron.NewScheduler(sopts...)
	if err != nil {
		return nil, err
	}
	_, err = s.NewJob(gocron.DurationJob(o.Every), gocron.NewTask(func() {
		res, err := Prune(ctx, st, o, time.Now())
		switch {
		case err != nil:
			log.Warn("retention: prune failed", "err", err)
		case res.Events+res.Runs > 0:
			log.Info("retention: pruned", "events", res.Events, "runs", res.Runs, "vacuumed", res.Vacuumed)
		}
	}), gocron.WithSingletonMode(gocron.LimitModeReschedule), gocron.WithStartAt(gocron.WithStartImmediately()))
	if err != nil {
		_ = s.Shutdown()
		return nil, err
	}
	s.Start()
	return func() {
		_ = s.Shutdown()
		if el != nil {
			el.Resign() // another replica takes over pruning at once
		}
	}, nil
}

// Flags registers the retention flags on fs (serve) and returns the options they fill. Each
// flag's default comes from its environment variable when set (PRYBAR_EVENT_MAX_AGE …), else from
// the defaults above; 0 means the default and a negative value disables the rule.
func Flags(fs *flag.FlagSet) *Options {
	o := &Options{}
	env := func(name string) string { return os.Getenv(name) }
	dur := func(name string, def time.Duration) time.Duration {
		if env(name) == "" {
			return def
		}
		v, err := time.ParseDuration(env(name))
		if err != nil && o.err == nil {
			o.err = fmt.Errorf("%s=%q: want a duration such as 720h", name, env(name))
		}
		return v
	}
	num := func(name string, def int) int {
		if env(name) == "" {
			return def
		}
		v, err := strconv.Atoi(env(name))
		if err != nil && o.err == nil {
			o.err = fmt.Errorf("%s=%q: want an integer", name, env(name))
		}
		return v
	}
	fs.DurationVar(&o.EventMaxAge, "event-max-age", dur("PRYBAR_EVENT_MAX_AGE", DefaultMaxAge), "retention: delete change-feed events older than this (env PRYBAR_EVENT_MAX_AGE; negative: never)")
	fs.IntVar(&o.EventMaxCount, "event-max-count", num("PRYBAR_EVENT_MAX_COUNT", DefaultEventCount), "retention: keep at most this many newest events (env PRYBAR_EVENT_MAX_COUNT; negative: no limit)")
	fs.DurationVar(&o.RunMaxAge, "run-max-age", dur("PRYBAR_RUN_MAX_AGE", DefaultMaxAge), "retention: delete finished runs started before this (the last run of each node-role is kept; env PRYBAR_RUN_MAX_AGE)")
	fs.IntVar(&o.RunMaxCount, "run-max-count", num("PRYBAR_RUN_MAX_COUNT", DefaultRunCount), "retention: keep at most this many newest runs besides each node-role's last (env PRYBAR_RUN_MAX_COUNT)")
	fs.DurationVar(&o.Every, "retention-every", dur("PRYBAR_RETENTION_EVERY", DefaultEvery), "how often retention runs (env PRYBAR_RETENTION_EVERY)")
	return o
}
