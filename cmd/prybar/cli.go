package main

import (
	"entgo.io/ent/dialect"

	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prybar/prybar/fixtures"
	"github.com/prybar/prybar/graph"
	"github.com/prybar/prybar/internal/auth"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/internal/httpserver"
	"github.com/prybar/prybar/internal/retention"
	"github.com/prybar/prybar/internal/secret"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/oob"
	"github.com/prybar/prybar/provision/operation"
	"github.com/prybar/prybar/provision/redfish"
	"github.com/prybar/prybar/provision/redfish/sessionjournal"
	"github.com/prybar/prybar/scheduler/leader"
)

// version is set by the linker (-X main.version=…); otherwise the module's build info is used.
var version = ""

const usage = `usage: prybar <command> [flags]

commands:
  serve                     run the API server (and the annealer)
  fixtures load FILE        load a fixture file (idempotent; "demo" loads the built-in demo)
  fixtures generate         generate a fleet (--machines N [--sites S --racks R] [--out FILE])
  roles load DIR            load an operator's role catalogue (YAML files)
  bootenvs load DIR         load an operator's boot environments (YAML files)
  sim redfish|fleet         run simulated BMCs (one Redfish BMC, or a fleet registered in Prybar)
  users add --role R NAME   add a user who signs in (password from a prompt or stdin)
  tokens create --role R N  create an API token for scripts (printed once)
  version                   print the version

Run 'prybar <command> --help' (or 'prybar <command> <subcommand> --help') for its flags.
`

const fixturesUsage = `usage: prybar fixtures <subcommand> [flags]

subcommands:
  load [--db DSN] FILE      load a fixture file (idempotent; "demo" loads the built-in demo);
                            an invalid file is rejected as file:line: what: why, nothing written
  generate --machines N     generate a fleet and load it (or --out FILE to write YAML)

Run 'prybar fixtures <subcommand> --help' for its flags.
`

const rolesUsage = `usage: prybar roles <subcommand> [flags]

subcommands:
  load [--db DSN] DIR       load an operator's role catalogue (YAML files in DIR)

Run 'prybar roles load --help' for its flags.
`

// errHelpShown reports that --help printed usage to stdout: the command succeeded.
var errHelpShown = errors.New("help shown")

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "-help" || arg == "help"
}

// newFlags is a flag set whose usage names the command; parseFlags prints it to stdout for
// --help (exit 0) and to stderr on a flag error (exit 1).
func newFlags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: prybar %s %s\n\nflags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	usage := fs.Usage
	fs.Usage = func() {}
	fs.SetOutput(stderr)
	err := fs.Parse(args)
	fs.Usage = usage
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		fs.SetOutput(stderr)
		return errHelpShown
	case err != nil:
		fs.Usage()
		return err
	}
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := dispatch(ctx, args, stdout, stderr)
	if errors.Is(err, errHelpShown) || errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stdout, stderr)
	case "fixtures":
		return fixturesCmd(ctx, args[1:], stdout, stderr)
	case "roles":
		return rolesCmd(ctx, args[1:], stdout, stderr)
	case "bootenvs":
		return bootenvsCmd(ctx, args[1:], stdout, stderr)
	case "sim":
		return simCmd(ctx, args[1:], stdout, stderr)
	case "users":
		return usersCmd(ctx, args[1:], stdout, stderr)
	case "tokens":
		return tokensCmd(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "prybar", versionString())
		return nil
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v := bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " " + s.Value[:12]
			}
		}
		return strings.TrimSpace(v + " " + bi.GoVersion)
	}
	return "dev"
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", "[--listen ADDR] [--db FILE|postgres://…] [--fixtures FILE|demo]")
	listen := fs.String("listen", "127.0.0.1:8080", "address to serve HTTP on")
	db := fs.String("db", store.DefaultDSN, "database: a SQLite file path, or postgres://…")
	fix := fs.String("fixtures", "", `fixture file to load at start ("demo" for the built-in demo)`)
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	retain := retention.Flags(fs)
	keyFile := fs.String("secret-key-file", "", "key sealing BMC passwords at rest (default prybar.key next to a SQLite database, else in the working directory; created 0600 when absent)")
	var bootF bootFlags
	bootF.register(fs)
	dhcpF := addDHCPFlags(fs)
	authF := addAuthFlags(fs)
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	tlsCfg, err := authF.tlsConfig(*listen, *db, stderr)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q (flags only; see prybar serve --help)", fs.Arg(0))
	}
	log := newLogger(stderr, *logLevel)
	// Bind first: a busy or malformed --listen fails before the database is created or migrated.
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", *listen, err)
	}
	defer ln.Close()
	st, err := openWithKey(ctx, *db, *keyFile)
	if err != nil {
		return err
	}
	defer st.Close()
	log.Info("database ready", "db", store.Describe(*db), "dialect", st.Dialect)
	if *fix != "" {
		stats, err := loadFixtures(ctx, st, *fix)
		if err != nil {
			return err
		}
		log.Info("fixtures loaded", "file", *fix, "result", stats.String())
		if *fix == "demo" {
			if err := auth.New(st, log).EnsureDemoUsers(ctx, DemoPassword); err != nil {
				return err
			}
		}
	}
	if st.Dialect == "postgres" {
		go events.Listen(ctx, st.DSN, st.Hub, log)
	}
	// Redfish sessions a crashed predecessor left open are listed before any client of this
	// process opens one, and logged out in the background (dead BMCs must not delay start-up).
	journal := sessionjournal.New(st, log)
	if stale, err := journal.Open(ctx); err != nil {
		log.Warn("cannot list Redfish sessions left by a previous run", "err", err)
	} else if len(stale) > 0 {
		go func() {
			n, err := redfish.LogoutSessions(ctx, journal, stale, redfish.WithTimeout(5*time.Second), redfish.WithRetry(2, time.Second))
			log.Info("Redfish sessions left by a previous run logged out", "count", n, "of", len(stale))
			if err != nil {
				log.Warn("some stale Redfish sessions could not be logged out; retried at the next start", "err", err)
			}
		}()
	}
	stopRetention, err := retention.Start(ctx, st, *retain, log)
	if err != nil {
		return err
	}
	defer stopRetention()
	annealer, stopScheduler, err := startScheduler(ctx, st, log)
	if err != nil {
		return err
	}
	// Stopped explicitly at the end of the drain below; the deferred call covers early returns
	// (stopping twice is safe: Stop waits for a scheduler that is already stopped).
	defer stopScheduler()
	bmcExec, err := annealer.Registry().Get(oob.Name)
	if err != nil {
		return err
	}
	ops := operation.New(st, bmcExec, log)
	if st.Dialect == dialect.Postgres {
		// Replicas: this server's number and liveness lock. Operations carry the number; any
		// server settles those whose owner no longer holds its lock (killed, crashed, cut off),
		// at start-up below and every few seconds after (ops.Watch).
		inst, err := leader.Register(ctx, st.DSN, operation.DefaultOwner())
		if err != nil {
			return err
		}
		defer inst.Close()
		ops.SetInstance(inst)
		go ops.Watch(ctx, 3*time.Second)
	}
	// On SQLite this is the only server, so every operation another process left unfinished is
	// dead and settled now; on PostgreSQL those whose owner is dead are.
	if n, err := ops.Recover(ctx, st.Dialect != dialect.Postgres); err != nil {
		return fmt.Errorf("recover operations: %w", err)
	} else if n > 0 {
		log.Warn("operations abandoned by a previous server marked ABANDONED", "count", n)
	}
	bootF.mainListen = *listen
	agentSrv := newAgentServer(st, log, st.SecretKey, bootF.discoveredName)
	boot, stopBoot, err := startBoot(ctx, st, log, bootF, st.SecretKey, agentSrv)
	if err != nil {
		return err
	}
	defer stopBoot()
	dhcpSrv, err := startDHCP(ctx, dhcpF, bootF, st, log)
	if err != nil {
		return err
	}
	if dhcpSrv != nil {
		defer dhcpSrv.Close()
	}
	api := graph.Options{Annealer: annealer, Operations: ops, Boot: boot, DHCP: dhcpSrv, RedfishOptions: []redfish.Option{redfish.WithSessionJournal(journal)}}
	serveErr := httpserver.Serve(ctx, httpserver.Config{Listener: ln, Store: st, Log: log, API: api, Boot: boot, TLS: tlsCfg, Auth: authF.config(), Agent: agentSrv}, func(addr net.Addr) {
		scheme := "http"
		if tlsCfg != nil {
			scheme = "https"
		}
		url := scheme + "://" + addr.String() + "/"
		fmt.Fprintf(stdout, "Prybar is serving at %s (GraphQL: %sgraphql)\n", url, url)
		if *fix == "demo" {
			fmt.Fprintf(stdout, "Sign in as admin, operator or viewer with password %q (demo users; API: curl -X POST %sauth/login -d '{\"name\":\"admin\",\"password\":\"%s\"}' -H 'Content-Type: application/json')\n", DemoPassword, url, DemoPassword)
		}
		log.Info("listening", "addr", addr.String(), "version", versionString())
	})
	// Serve returns once HTTP has drained (in-flight requests answered, up to 10 s); then the
	// tracked operations and the annealer's runs are waited for, each step logged with how long it
	// took, so an operator sees what a slow shutdown waited on.
	drainStart := time.Now()
	// Operations in flight are cancelled and recorded (ABANDONED with the reason), not waited
	// out: one polling a dead BMC must not hold the shutdown, nor the leadership it keeps.
	log.Info("shutdown: HTTP drained; cancelling operations in flight", "http_error", errString(serveErr))
	step := time.Now()
	ops.Shutdown()
	log.Info("shutdown: operations drained", "took", time.Since(step).Round(time.Millisecond))
	step = time.Now()
	log.Info("shutdown: stopping the annealer (waits for its runs in flight)")
	stopScheduler()
	log.Info("shutdown: annealer stopped", "took", time.Since(step).Round(time.Millisecond))
	log.Info("shutdown complete", "drain_took", time.Since(drainStart).Round(time.Millisecond))
	return serveErr
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// secretKeyPath is the --secret-key-file default: prybar.key in the SQLite database's directory,
// so the key travels with the database it unlocks (and a database copied alone stays sealed);
// in the working directory for PostgreSQL or in-memory databases.
func secretKeyPath(flagValue, dsn string) string {
	if flagValue != "" {
		return flagValue
	}
	if dsn == "" {
		dsn = store.DefaultDSN
	}
	if strings.HasPrefix(dsn, "postgres") || strings.Contains(dsn, ":memory:") || strings.Contains(dsn, "mode=memory") {
		return "prybar.key"
	}
	p := strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite://"), "file:")
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	return filepath.Join(filepath.Dir(p), "prybar.key")
}

func loadFixtures(ctx context.Context, st *store.Store, name string) (fixtures.Stats, error) {
	if name == "demo" {
		f, err := fixtures.Parse("demo.yaml", fixtures.Demo)
		if err != nil {
			return fixtures.Stats{}, err
		}
		return fixtures.Load(ctx, st, "demo.yaml", f)
	}
	return fixtures.LoadFile(ctx, st, name)
}

func fixturesCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, fixturesUsage)
		return errors.New("fixtures: no subcommand given")
	}
	if isHelp(args[0]) {
		fmt.Fprint(stdout, fixturesUsage)
		return nil
	}
	switch args[0] {
	case "load":
		fs := newFlags("fixtures load", "[--db DSN] FILE|demo")
		db := fs.String("db", store.DefaultDSN, "database: a SQLite file path, or postgres://…")
		keyFile := fs.String("secret-key-file", "", "key sealing BMC passwords (as for serve)")
		if err := parseFlags(fs, args[1:], stdout, stderr); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return errors.New("usage: prybar fixtures load [--db DSN] FILE")
		}
		st, err := openWithKey(ctx, *db, *keyFile)
		if err != nil {
			return err
		}
		defer st.Close()
		stats, err := loadFixtures(ctx, st, fs.Arg(0))
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, stats.String())
		return nil
	case "generate":
		fs := newFlags("fixtures generate", "--machines N [--sites S --racks R] [--seed X] [--out FILE|-] [--db DSN]")
		db := fs.String("db", store.DefaultDSN, "database: a SQLite file path, or postgres://…")
		machines := fs.Int("machines", 100, "number of machines")
		sites := fs.Int("sites", 1, "number of sites")
		racks := fs.Int("racks", 0, "racks per site (raised when the machines would not fit)")
		seed := fs.Uint64("seed", 1, "random seed (same seed, same fleet)")
		out := fs.String("out", "", "write YAML to this file instead of loading it ('-' for stdout)")
		keyFile := fs.String("secret-key-file", "", "key sealing BMC passwords (as for serve)")
		if err := parseFlags(fs, args[1:], stdout, stderr); err != nil {
			return err
		}
		if *machines < 0 || *sites < 1 {
			return errors.New("--machines must be ≥ 0 and --sites ≥ 1")
		}
		f := fixtures.Generate(fixtures.GenerateOptions{Machines: *machines, Sites: *sites, Racks: *racks, Seed: *seed})
		if *out != "" {
			data, err := fixtures.Marshal(f)
			if err != nil {
				return err
			}
			if *out == "-" {
				_, err = stdout.Write(data)
				return err
			}
			return os.WriteFile(*out, data, 0o644)
		}
		st, err := openWithKey(ctx, *db, *keyFile)
		if err != nil {
			return err
		}
		defer st.Close()
		fmt.Fprintf(stderr, "loading %d generated machines…\n", *machines)
		stats, err := fixtures.Load(ctx, st, "generated", f)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, stats.String())
		return nil
	}
	fmt.Fprint(stderr, fixturesUsage)
	return fmt.Errorf("unknown fixtures command %q (want load or generate)", args[0])
}

// openWithKey opens the database with the BMC-password key serve uses, so that every writer seals
// passwords the same way.
func openWithKey(ctx context.Context, dsn, keyFile string) (*store.Store, error) {
	keyPath := secretKeyPath(keyFile, dsn)
	key, err := secret.LoadOrCreateKey(keyPath)
	if err != nil {
		return nil, fmt.Errorf("secret key %s (for database %s): %w", keyPath, store.Describe(dsn), err)
	}
	return openStore(ctx, dsn, store.Options{SecretKey: key})
}

// openStore opens the database for a CLI command; its error names the database, since "unable to
// open database file" alone does not say which one.
func openStore(ctx context.Context, dsn string, opts ...store.Options) (*store.Store, error) {
	st, err := store.Open(ctx, dsn, opts...)
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", store.Describe(dsn), err)
	}
	return st, nil
}
