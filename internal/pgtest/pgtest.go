// Package pgtest gives tests a throwaway PostgreSQL server and fresh
// databases on it.
//
// A test package starts at most one server (starting a cluster costs a few
// seconds, a database on it a few milliseconds) and hands every test its own
// database, so tests never see each other's rows or sequence values:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		dsn := pgtest.New(t) // skips the test when PostgreSQL is unavailable
//		...
//	}
//
// Where the server comes from, in order:
//
//  1. PRYBAR_TEST_POSTGRES, a DSN to an existing server whose user may create
//     databases. Nothing is started or stopped; only databases are created
//     (and dropped again by New's cleanup).
//  2. Local PostgreSQL server binaries (initdb, pg_ctl): from PRYBAR_PG_BIN,
//     the newest /usr/lib/postgresql/*/bin, or PATH. The cluster lives in a
//     temporary directory, listens on 127.0.0.1 on a free port and runs with
//     durability switched off (fsync, synchronous_commit, full_page_writes),
//     which is safe because its data is thrown away. PostgreSQL refuses to run
//     as root, so as root the binaries run as the "postgres" user via runuser.
//  3. Otherwise Start returns ErrUnavailable and New skips the test — or, under CI=true, fails it
//     (see internal/testenv).
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/prybar/prybar/internal/testenv"
)

// EnvDSN names the environment variable that points the tests at an existing
// PostgreSQL server instead of a throwaway one.
const EnvDSN = "PRYBAR_TEST_POSTGRES"

// EnvBin names the environment variable that overrides the directory holding
// initdb and pg_ctl.
const EnvBin = "PRYBAR_PG_BIN"

// ErrUnavailable reports that neither PRYBAR_TEST_POSTGRES nor usable server
// binaries exist. Tests hand it to testenv.Require: a developer machine
// without PostgreSQL still runs the SQLite half of the suite, a CI run fails.
var ErrUnavailable = errors.New("pgtest: PostgreSQL unavailable (set " + EnvDSN +
	" to a server DSN, or install the PostgreSQL server binaries)")

// Cluster is a PostgreSQL server tests may create databases on: either one
// this package started (and Stop tears down), or an external one named by
// PRYBAR_TEST_POSTGRES (which Stop leaves alone).
type Cluster struct {
	admin *url.URL // DSN of the maintenance database, as a URL
	kv    string   // non-empty when the external DSN is in keyword/value form

	// Set only for clusters this package started.
	dir    string
	data   string
	bin    string
	runAs  string // "postgres" when we are root, else ""
	port   int
	reaper *exec.Cmd

	stopOnce sync.Once
	stopErr  error
}

// Start returns the external server named by PRYBAR_TEST_POSTGRES when set,
// otherwise starts a throwaway cluster. It returns an error wrapping
// ErrUnavailable when there is no way to get a server.
func Start() (*Cluster, error) {
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		return external(dsn)
	}
	return startLocal()
}

func external(dsn string) (*Cluster, error) {
	// Validate and normalise through pgx so both URL and keyword/value DSNs
	// work; a typo should fail loudly here rather than as a skipped test.
	if _, err := pgx.ParseConfig(dsn); err != nil {
		return nil, fmt.Errorf("pgtest: %s: %w", EnvDSN, err)
	}
	c := &Cluster{}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return nil, fmt.Errorf("pgtest: %s: %w", EnvDSN, err)
		}
		c.admin = u
	} else {
		c.kv = dsn
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN())
	if err != nil {
		return nil, fmt.Errorf("pgtest: connect to %s: %w", EnvDSN, err)
	}
	return c, conn.Close(ctx)
}

// findBin locates the directory holding initdb and pg_ctl.
func findBin() (string, error) {
	has := func(dir string) bool {
		for _, b := range []string{"initdb", "pg_ctl", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if dir := os.Getenv(EnvBin); dir != "" {
		if !has(dir) {
			return "", fmt.Errorf("pgtest: %s=%s: no initdb/pg_ctl/postgres there", EnvBin, dir)
		}
		return dir, nil
	}
	// Debian/Ubuntu keep server binaries off PATH, one directory per major
	// version; prefer the newest.
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if has(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if d := filepath.Dir(p); has(d) {
			return d, nil
		}
	}
	return "", ErrUnavailable
}

func startLocal() (_ *Cluster, err error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin}

	parent := os.TempDir()
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("%w: running as root needs a \"postgres\" user: %v", ErrUnavailable, err)
		}
		if _, err := exec.LookPath("runuser"); err != nil {
			return nil, fmt.Errorf("%w: running as root needs runuser: %v", ErrUnavailable, err)
		}
		c.runAs = u.Username
		// The postgres user must be able to traverse every parent; a
		// TMPDIR under /root would not be.
		parent = "/tmp"
	}

	c.dir, err = os.MkdirTemp(parent, "prybar-pg-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	defer func() {
		if err != nil {
			c.teardown()
		}
	}()
	c.data = filepath.Join(c.dir, "data")
	sock := filepath.Join(c.dir, "sock")
	if err := os.Mkdir(sock, 0o700); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if c.runAs != "" {
		if err := chownTree(c.dir, c.runAs); err != nil {
			return nil, err
		}
	}

	// --no-sync: the cluster is disposable, so there is no point waiting for
	// initdb's files to reach the disk.
	if out, err := c.run("initdb", "-D", c.data, "-U", "postgres", "--auth=trust",
		"-E", "UTF8", "--no-sync", "--no-instructions"); err != nil {
		return nil, fmt.Errorf("pgtest: initdb: %v\n%s", err, out)
	}

	// The reaper stops the server if this process dies without calling
	// Stop (a test timeout panics past every defer), so aborted runs do not
	// leave servers behind on a small shared machine.
	if err := c.startReaper(); err != nil {
		return nil, err
	}

	// The free port is probed then released, so another process can take it
	// before the server binds; retry with a fresh port in that case.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		c.port, err = freePort()
		if err != nil {
			return nil, err
		}
		opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s"+
			" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"+
			" -c max_connections=200", c.port, sock)
		out, err := c.run("pg_ctl", "-D", c.data, "-l", filepath.Join(c.dir, "log"),
			"-o", opts, "-w", "-t", "60", "start")
		if err == nil {
			lastErr = nil
			break
		}
		log, _ := os.ReadFile(filepath.Join(c.dir, "log"))
		lastErr = fmt.Errorf("pgtest: pg_ctl start: %v\n%s\n%s", err, out, tail(string(log), 2000))
	}
	if lastErr != nil {
		return nil, lastErr
	}
	c.admin = &url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path:     "/postgres",
		RawQuery: "sslmode=disable",
	}
	return c, nil
}

// run executes a server binary, as the postgres user when we are root.
func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	path := filepath.Join(c.bin, name)
	var cmd *exec.Cmd
	if c.runAs != "" {
		cmd = exec.Command("runuser", append([]string{"-u", c.runAs, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = c.dir
	return cmd.CombinedOutput()
}

func (c *Cluster) startReaper() error {
	pgctl := shellQuote(filepath.Join(c.bin, "pg_ctl"))
	if c.runAs != "" {
		pgctl = "runuser -u " + shellQuote(c.runAs) + " -- " + pgctl
	}
	// Ignoring INT/HUP keeps a Ctrl-C aimed at `go test` from killing the
	// reaper before it has cleaned up after the test binary.
	script := `trap '' INT HUP TERM
while kill -0 "$1" 2>/dev/null; do sleep 1; done
` + pgctl + ` -D "$2" -m immediate stop >/dev/null 2>&1
rm -rf "$3"`
	cmd := exec.Command("/bin/sh", "-c", script, "pgtest-reaper",
		strconv.Itoa(os.Getpid()), c.data, c.dir)
	// No stdout/stderr pipes: `go test` waits for inherited pipes to close,
	// which would make it wait for the reaper.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, nil, nil
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start reaper: %w", err)
	}
	c.reaper = cmd
	return nil
}

// teardown stops a local server and removes its directory; used by Stop and
// when Start fails half-way.
func (c *Cluster) teardown() error {
	var err error
	if c.data != "" {
		if _, statErr := os.Stat(filepath.Join(c.data, "postmaster.pid")); statErr == nil {
			// Immediate mode: nothing on disk is worth a clean checkpoint.
			if out, e := c.run("pg_ctl", "-D", c.data, "-m", "immediate", "-w", "stop"); e != nil {
				err = fmt.Errorf("pgtest: pg_ctl stop: %v\n%s", e, out)
			}
		}
	}
	if c.reaper != nil && c.reaper.Process != nil {
		_ = c.reaper.Process.Kill()
		_ = c.reaper.Wait()
	}
	if c.dir != "" {
		if e := os.RemoveAll(c.dir); e != nil && err == nil {
			err = fmt.Errorf("pgtest: %w", e)
		}
	}
	return err
}

// Stop shuts down and deletes a cluster this package started. For an external
// server it does nothing. Calling it more than once is harmless.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		if c.dir != "" {
			c.stopErr = c.teardown()
		}
	})
	return c.stopErr
}

// DSN returns the DSN of the server's maintenance database ("postgres" on a
// local cluster). Tests should not put their tables there; use CreateDB.
func (c *Cluster) DSN() string {
	if c.kv != "" {
		return c.kv
	}
	return c.admin.String()
}

// DBDSN returns the DSN for database name on this server; the database need
// not exist yet.
func (c *Cluster) DBDSN(name string) string {
	if c.kv != "" {
		// Later keywords override earlier ones in keyword/value DSNs.
		return c.kv + " dbname=" + quoteKV(name)
	}
	u := *c.admin
	u.Path = "/" + name
	u.RawPath = ""
	return u.String()
}

// CreateDB creates an empty database called name and returns its DSN, e.g.
// postgres://postgres@127.0.0.1:PORT/NAME?sslmode=disable.
func (c *Cluster) CreateDB(name string) (string, error) {
	if name == "" {
		return "", errors.New("pgtest: empty database name")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN())
	if err != nil {
		return "", fmt.Errorf("pgtest: create database %q: %w", name, err)
	}
	defer conn.Close(context.Background())
	stmt := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	for attempt := 0; ; attempt++ {
		_, err = conn.Exec(ctx, stmt)
		// 55006 object_in_use: someone is connected to template1 right now
		// (another package's test on a shared external server); it passes.
		var pgErr *pgconn.PgError
		if err == nil || attempt == 20 || !errors.As(err, &pgErr) || pgErr.Code != "55006" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return "", fmt.Errorf("pgtest: create database %q: %w", name, err)
	}
	return c.DBDSN(name), nil
}

// DropDB drops database name, disconnecting any sessions still using it, and
// succeeds if it does not exist.
func (c *Cluster) DropDB(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN())
	if err != nil {
		return fmt.Errorf("pgtest: drop database %q: %w", name, err)
	}
	defer conn.Close(context.Background())
	// WITH (FORCE) (PostgreSQL 13+): a test that forgot to close its client
	// must not make cleanup fail.
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("pgtest: drop database %q: %w", name, err)
	}
	return nil
}

var (
	sharedOnce sync.Once
	sharedMu   sync.Mutex
	shared     *Cluster
	sharedErr  error
)

// Shared returns the package-wide cluster, starting it on first use. Its error
// wraps ErrUnavailable when there is no PostgreSQL to use.
func Shared() (*Cluster, error) {
	sharedOnce.Do(func() {
		c, err := Start()
		sharedMu.Lock()
		shared, sharedErr = c, err
		sharedMu.Unlock()
	})
	sharedMu.Lock()
	defer sharedMu.Unlock()
	return shared, sharedErr
}

// Shutdown stops the package-wide cluster if New or Shared started one. Call
// it from TestMain after m.Run (Main does).
func Shutdown() error {
	sharedMu.Lock()
	c := shared
	sharedMu.Unlock()
	if c == nil {
		return nil
	}
	return c.Stop()
}

// Main runs the tests and then Shutdown, for use as
// os.Exit(pgtest.Main(m)) in TestMain.
func Main(m *testing.M) int {
	code := m.Run()
	if err := Shutdown(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

var (
	seqMu sync.Mutex
	seq   int
	// pidTag keeps names from different test binaries apart on a shared
	// external server, where packages run concurrently.
	pidTag = strconv.FormatInt(int64(os.Getpid()), 36)
)

var unsafeName = regexp.MustCompile(`[^a-z0-9_]+`)

// New returns the DSN of a fresh, empty database on the package-wide cluster
// and drops the database when the test ends. It skips the test when PostgreSQL
// is unavailable (fails it under CI=true) and fails it on any other error.
func New(t testing.TB) string {
	t.Helper()
	c, err := Shared()
	if errors.Is(err, ErrUnavailable) {
		testenv.Require(t, "PostgreSQL", err)
	}
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	seqMu.Lock()
	seq++
	n := seq
	seqMu.Unlock()
	// Name from the test so a kept database (external server, crashed run)
	// is recognisable; 63 bytes is PostgreSQL's identifier limit.
	suffix := fmt.Sprintf("_%s_%d", pidTag, n)
	base := strings.Trim(unsafeName.ReplaceAllString(strings.ToLower(t.Name()), "_"), "_")
	if max := 63 - len("t_") - len(suffix); len(base) > max {
		base = base[:max]
	}
	name := "t_" + base + suffix
	dsn, err := c.CreateDB(name)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	t.Cleanup(func() {
		if err := c.DropDB(name); err != nil {
			t.Errorf("postgres: %v", err)
		}
	})
	return dsn
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func chownTree(root, username string) error {
	u, err := user.Lookup(username)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, uid, gid)
	})
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func quoteKV(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
