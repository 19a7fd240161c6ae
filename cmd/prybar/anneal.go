package main

// This file wires the annealer (scheduler/) into `prybar serve` and provides `prybar roles`.
//
// serve reads these environment variables (flags belong to serve's owner; these are the
// annealer's knobs):
//
//	PRYBAR_SCHEDULER=off         do not run the annealer in this process (API only)
//	PRYBAR_CONCURRENCY=N         runs in flight at most (default 256)
//	PRYBAR_ROLES=DIR             operator role files loaded at start, after the built-in roles
//	PRYBAR_TEST_EFFECTS=FILE     effects file of the "test" executor (see executor.Test)
//	PRYBAR_TEST_IDEMPOTENT=true  the "test" executor declares itself idempotent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"time"

	"entgo.io/ent/dialect"

	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/agentapi"
	"github.com/prybar/prybar/provision/oob"
	"github.com/prybar/prybar/provision/pxe"
	"github.com/prybar/prybar/provision/redfish"
	"github.com/prybar/prybar/provision/redfish/sessionjournal"
	"github.com/prybar/prybar/scheduler"
	"github.com/prybar/prybar/scheduler/executor"
	"github.com/prybar/prybar/scheduler/leader"
)

// newRegistry builds the executors the annealer may run. Register further executors here (the
// BMC executor, …).
func newRegistry(st *store.Store, log *slog.Logger) *executor.Registry {
	idem, _ := strconv.ParseBool(os.Getenv("PRYBAR_TEST_IDEMPOTENT"))
	bmcExec := oob.New(oob.Config{Log: log,
		// Every Redfish session the executor opens is journalled, so a crash cannot leak it.
		RedfishOptions: []redfish.Option{redfish.WithSessionJournal(sessionjournal.New(st, log))}})
	// The PXE executors reach the agent protocol through the store (an agent's long poll sees a
	// queued task within its 1 s database poll).
	agentBackend := &agentapi.Backend{Server: &agentapi.Server{Store: st, Log: log}}
	return executor.NewRegistry(
		executor.Noop{},
		&executor.Test{EffectsFile: os.Getenv("PRYBAR_TEST_EFFECTS"), IsIdempotent: idem},
		bmcExec,
		pxe.Discover{Backend: agentBackend, BMC: bmcExec},
		pxe.AgentTask{Backend: agentBackend},
		pxe.Install{Backend: agentBackend, BMC: bmcExec},
		pxe.LocalBoot{Backend: agentBackend},
	)
}

// newAnnealer builds the annealer for st (PostgreSQL: with leader election) and loads the
// built-in roles (and PRYBAR_ROLES) into the database. It does not start it.
func newAnnealer(ctx context.Context, st *store.Store, log *slog.Logger) (*scheduler.Annealer, error) {
	opts := scheduler.Options{Log: log}
	if v := os.Getenv("PRYBAR_CONCURRENCY"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("PRYBAR_CONCURRENCY=%q: want a positive integer", v)
		}
		opts.Concurrency = n
	}
	if st.Dialect == dialect.Postgres {
		opts.Elector = leader.New(st.DSN)
	}
	a := scheduler.New(st, newRegistry(st, log), opts)
	defs, err := scheduler.ReadRolesDir()
	if dir := os.Getenv("PRYBAR_ROLES"); dir != "" {
		defs, err = scheduler.ReadRolesDir(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("PRYBAR_ROLES: %w", err)
	}
	// Several servers may start at once on PostgreSQL: a lost race on a role's unique name is
	// settled by loading again (the second load finds the rows and writes nothing).
	var res scheduler.LoadResult
	for attempt := 0; attempt < 3; attempt++ {
		if res, err = a.LoadRoleDefs(ctx, defs); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("load roles: %w", err)
	}
	log.Info("roles loaded", "result", res.String())
	return a, nil
}

// startScheduler builds the annealer for st and starts it in the background (unless
// PRYBAR_SCHEDULER=off: the API still binds and commits, another replica runs the work). The
// returned function stops it and waits.
func startScheduler(ctx context.Context, st *store.Store, log *slog.Logger) (a *scheduler.Annealer, stop func(), err error) {
	ctx = events.WithActor(ctx, "scheduler")
	a, err = newAnnealer(ctx, st, log)
	if err != nil {
		return nil, nil, err
	}
	if v := os.Getenv("PRYBAR_SCHEDULER"); v == "off" || v == "false" || v == "0" {
		log.Info("annealer disabled by PRYBAR_SCHEDULER")
		return a, func() {}, nil
	}
	if err := a.Start(ctx); err != nil {
		return nil, nil, err
	}
	// SIGTERM: leadership is released the moment the server is told to stop, not after HTTP and
	// operations have drained, so another replica takes over at its next sweep.
	go func() {
		<-ctx.Done()
		a.Resign()
		log.Info("shutdown: scheduler leadership released")
	}()
	log.Info("annealer started", "executors", a.Registry().Names(), "dialect", st.Dialect)
	return a, a.Stop, nil
}

func rolesCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprint(stdout, rolesUsage)
		return nil
	}
	if len(args) == 0 || args[0] != "load" {
		fmt.Fprint(stderr, rolesUsage)
		return errors.New("usage: prybar roles load [--db DSN] DIR")
	}
	fs := newFlags("roles load", "[--db DSN] DIR")
	db := fs.String("db", store.DefaultDSN, "database: a SQLite file path, or postgres://…")
	if err := parseFlags(fs, args[1:], stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: prybar roles load [--db DSN] DIR")
	}
	defs, err := scheduler.ReadRolesDir(fs.Arg(0))
	if err != nil {
		return err
	}
	st, err := openStore(ctx, *db)
	if err != nil {
		return err
	}
	defer st.Close()
	a := scheduler.New(st, nil, scheduler.Options{Log: newLogger(stderr, "warn")})
	res, err := a.LoadRoleDefs(events.WithActor(ctx, "roles-load"), defs)
	if err != nil {
		return err
	}
	if _, err := a.EnsureSystem(events.WithActor(ctx, "roles-load")); err != nil {
		return err
	}
	fmt.Fprintln(stdout, res.String())
	return nil
}
