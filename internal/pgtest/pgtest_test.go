package pgtest

import (
	"context"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/prybar/prybar/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func query(t *testing.T, dsn, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// TestCluster covers the lifecycle the lead relies on: start, two isolated
// databases, connect to each, stop (and stop again).
func TestCluster(t *testing.T) {
	c, err := Start()
	if errors.Is(err, ErrUnavailable) {
		testenv.Require(t, "PostgreSQL", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()

	a, err := c.CreateDB("alpha")
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.CreateDB("beta")
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv(EnvDSN) == "" {
		if !strings.HasPrefix(a, "postgres://postgres@127.0.0.1:") || !strings.HasSuffix(a, "/alpha?sslmode=disable") {
			t.Errorf("unexpected DSN %q", a)
		}
	}
	if got := query(t, a, "SELECT current_database()"); got != "alpha" {
		t.Errorf("current_database via %s = %q", a, got)
	}
	if got := query(t, b, "SELECT current_database()"); got != "beta" {
		t.Errorf("current_database via %s = %q", b, got)
	}
	if os.Getenv(EnvDSN) == "" {
		// The speed settings are the reason the cluster is usable in tests.
		if got := query(t, a, "SHOW fsync"); got != "off" {
			t.Errorf("fsync = %s", got)
		}
		if got := query(t, a, "SHOW max_connections"); got != "200" {
			t.Errorf("max_connections = %s", got)
		}
	}
	if _, err := c.CreateDB("alpha"); err == nil {
		t.Error("creating an existing database succeeded")
	}
	for _, n := range []string{"alpha", "beta"} {
		if err := c.DropDB(n); err != nil {
			t.Error(err)
		}
	}

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if c.dir != "" {
		if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
			t.Errorf("cluster directory %s survives Stop: %v", c.dir, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, a); err == nil {
			conn.Close(ctx)
			t.Error("server still accepts connections after Stop")
		}
	}
}

func TestNew(t *testing.T) {
	var dsns []string
	for _, name := range []string{"one", "two"} {
		t.Run(name, func(t *testing.T) {
			dsn := New(t)
			dsns = append(dsns, dsn)
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			// Every database starts empty, so tables never collide.
			if _, err := conn.Exec(ctx, "CREATE TABLE x (id serial PRIMARY KEY)"); err != nil {
				t.Fatal(err)
			}
		})
	}
	if len(dsns) == 2 && dsns[0] == dsns[1] {
		t.Errorf("New returned the same database twice: %s", dsns[0])
	}
	// New's cleanup dropped them.
	c, err := Shared()
	if errors.Is(err, ErrUnavailable) {
		testenv.Require(t, "PostgreSQL", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dsns {
		name := d[strings.LastIndex(d, "/")+1:]
		name = strings.TrimSuffix(name, "?sslmode=disable")
		got := query(t, c.DSN(), "SELECT count(*)::text FROM pg_database WHERE datname = '"+name+"'")
		if got != "0" {
			t.Errorf("database %s not dropped", name)
		}
	}
}

func TestDBDSN(t *testing.T) {
	base, _ := url.Parse("postgres://u:p@db.example:6543/postgres?sslmode=require")
	if got, want := (&Cluster{admin: base}).DBDSN("x"), "postgres://u:p@db.example:6543/x?sslmode=require"; got != want {
		t.Errorf("URL DBDSN = %q, want %q", got, want)
	}
	u := &Cluster{}
	u.kv = "host=h user=u dbname=postgres"
	if got, want := u.DBDSN("x"), "host=h user=u dbname=postgres dbname='x'"; got != want {
		t.Errorf("kv DBDSN = %q, want %q", got, want)
	}
	cfg, err := pgx.ParseConfig(u.DBDSN("x"))
	if err != nil || cfg.Database != "x" {
		t.Errorf("kv DSN parses to database %v (%v)", cfg, err)
	}
}
