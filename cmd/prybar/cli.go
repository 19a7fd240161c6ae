package main

import (
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

	"github.com/prybar/prybar/fixtures"
	"github.com/prybar/prybar/graph"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/internal/httpserver"
	"github.com/prybar/prybar/internal/secret"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/oob"
	"github.com/prybar/prybar/provision/operation"
)

// version is set by the linker (-X main.version=…); otherwise the module's build info is used.
var version = ""

const usage = `usage: prybar <command> [flags]

commands:
  serve                     run the API server (and the annealer)
  fixtures load FILE        load a fixture file (idempotent; "demo" loads the built-in demo)
  fixtures generate         generate a fleet (--machines N [--sites S --racks R] [--out FILE])
  roles load DIR            load an operator's role catalogue (YAML files)
  sim redfish|fleet         run simulated BMCs (one Redfish BMC, or a fleet registered in Prybar)
  version                   print the version

Run 'prybar <command> -h' for a command's flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
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
	case "sim":
		return simCmd(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "prybar", versionString())
		return nil
	case "help", "-h", "--help":
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
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "address to serve HTTP on")
	db := fs.String("db", store.DefaultDSN, "database: a SQLite file path, or postgres://…")
	fix := fs.String("fixtures", "", `fixture file to load at start ("demo" for the built-in demo)`)
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	keyFile := fs.String("secret-key-file", "", "key sealing BMC passwords at rest (default prybar.key next to a SQLite database, else in the working directory; created 0600 when absent)")
	dhcpF := addDHCPFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := newLogger(stderr, *logLevel)
	key, err := secret.LoadOrCreateKey(secretKeyPath(*keyFile, *db))
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, *db, store.Options{SecretKey: key})
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
	}
	if st.Dialect == "postgres" {
		go events.Listen(ctx, st.DSN, st.Hub, log)
	}
	annealer, stopScheduler, err := startScheduler(ctx, st, log)
	if err != nil {
		return err
	}
	defer stopScheduler()
	bmcExec, err := annealer.Registry().Get(oob.Name)
	if err != nil {
		return err
	}
	ops := operation.New(st, bmcExec, log)
	if n, err := ops.Recover(ctx); err != nil {
		return fmt.Errorf("recover operations: %w", err)
	} else if n > 0 {
		log.Warn("operations abandoned by a previous server marked ABANDONED", "count", n)
	}
	defer ops.Wait()
	dhcpSrv, err := startDHCP(ctx, dhcpF, st, log)
	if err != nil {
		return err
	}
	if dhcpSrv != nil {
		defer dhcpSrv.Close()
	}
	api := graph.Options{Annealer: annealer, Operations: ops, DHCP: dhcpSrv}
	return httpserver.Serve(ctx, httpserver.Config{Listen: *listen, Store: st, Log: log, API: api}, func(addr net.Addr) {
		url := "http://" + addr.String() + "/"
		fmt.Fprintf(stdout, "Prybar is serving at %s (GraphQL: %sgraphql)\n", url, url)
		log.Info("listening", "addr", addr.String(), "version", versionString())
	})
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
		return errors.New("usage: prybar fixtures load FILE | generate --machines N")
	}
	switch args[0] {
	case "load":
		fs := flag.NewFlagSet("fixtures load", flag.ContinueOnError)
		fs.SetOutput(stderr)
		db := fs.String("db", store.DefaultDSN, "database: a SQLite file path, or postgres://…")
		keyFile := fs.String("secret-key-file", "", "key sealing BMC passwords (as for serve)")
		if err := fs.Parse(args[1:]); err != nil {
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
		fs := flag.NewFlagSet("fixtures generate", flag.ContinueOnError)
		fs.SetOutput(stderr)
		db := fs.String("db", store.DefaultDSN, "database: a SQLite file path, or postgres://…")
		machines := fs.Int("machines", 100, "number of machines")
		sites := fs.Int("sites", 1, "number of sites")
		racks := fs.Int("racks", 0, "racks per site (raised when the machines would not fit)")
		seed := fs.Uint64("seed", 1, "random seed (same seed, same fleet)")
		out := fs.String("out", "", "write YAML to this file instead of loading it ('-' for stdout)")
		keyFile := fs.String("secret-key-file", "", "key sealing BMC passwords (as for serve)")
		if err := fs.Parse(args[1:]); err != nil {
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
	return fmt.Errorf("unknown fixtures command %q (want load or generate)", args[0])
}

// openWithKey opens the database with the BMC-password key serve uses, so that every writer seals
// passwords the same way.
func openWithKey(ctx context.Context, dsn, keyFile string) (*store.Store, error) {
	key, err := secret.LoadOrCreateKey(secretKeyPath(keyFile, dsn))
	if err != nil {
		return nil, err
	}
	return store.Open(ctx, dsn, store.Options{SecretKey: key})
}
