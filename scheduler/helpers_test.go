package scheduler

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/ent/run"
	"github.com/prybar/prybar/internal/pgtest"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/scheduler/catalog"
	"github.com/prybar/prybar/scheduler/executor"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

type env struct {
	t       testing.TB
	st      *store.Store
	a       *Annealer
	effects string
	sys     *ent.Deployment
}

// quietLog discards the annealer's log unless PRYBAR_TEST_LOG is set.
func quietLog() *slog.Logger {
	if os.Getenv("PRYBAR_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newEnv opens a fresh SQLite database (or dsn when given) with the built-in roles loaded.
func newEnv(t testing.TB, dsn string, opts Options) *env {
	t.Helper()
	ctx := context.Background()
	if dsn == "" {
		dsn = filepath.Join(t.TempDir(), "prybar.db")
	}
	st, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	effects := filepath.Join(t.TempDir(), "effects")
	reg := executor.NewRegistry(executor.Noop{}, &executor.Test{EffectsFile: effects})
	if opts.Log == nil {
		opts.Log = quietLog()
	}
	if opts.Sweep == 0 {
		opts.Sweep = 200 * time.Millisecond
	}
	a := New(st, reg, opts)
	if _, err := a.LoadRoles(ctx, catalog.Builtin()); err != nil {
		t.Fatal(err)
	}
	sys, err := a.EnsureSystem(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, st: st, a: a, effects: effects, sys: sys}
}

func (e *env) start() {
	e.t.Helper()
	if err := e.a.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(e.a.Stop)
}

// machines creates n alive machines and returns their ids.
func (e *env) machines(n int, prefix string) []int {
	e.t.Helper()
	var ids []int
	err := e.st.Tx(context.Background(), func(ctx context.Context, tx *ent.Tx) error {
		for start := 0; start < n; start += 500 {
			var bs []*ent.MachineCreate
			for i := start; i < min(n, start+500); i++ {
				bs = append(bs, tx.Machine.Create().SetName(fmt.Sprintf("%s%05d.test.example", prefix, i)).SetAlive(true))
			}
			ms, err := tx.Machine.CreateBulk(bs...).Save(ctx)
			if err != nil {
				return err
			}
			for _, m := range ms {
				ids = append(ids, m.ID)
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return ids
}

// settle waits until nothing is left to run: no node-role in TODO or TRANSITION, and no automatic
// retry pending.
func (e *env) settle(timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		n, err := e.st.Client.NodeRole.Query().Where(noderole.Or(
			noderole.StateIn(noderole.StateTODO, noderole.StateTRANSITION),
			noderole.And(noderole.StateEQ(noderole.StateERROR), noderole.NextAttemptAtNotNil()))).Count(context.Background())
		if err != nil {
			e.t.Fatal(err)
		}
		if n == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	st, _ := e.a.Status(context.Background())
	e.t.Fatalf("did not settle in %s: %+v", timeout, st)
}

func (e *env) nr(id int) *ent.NodeRole {
	e.t.Helper()
	nr, err := e.st.Client.NodeRole.Get(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return nr
}

func (e *env) runsOf(id int) []*ent.Run {
	e.t.Helper()
	rs, err := e.st.Client.Run.Query().Where(run.NodeRoleID(id)).Order(ent.Asc(run.FieldID)).All(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return rs
}
