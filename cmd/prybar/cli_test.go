package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Every command and subcommand answers --help (and -h) with its usage on stdout and success.
func TestHelpOnEveryCommand(t *testing.T) {
	cases := []struct {
		args []string
		want string // something the usage must mention
	}{
		{[]string{"--help"}, "serve"},
		{[]string{"-h"}, "fixtures"},
		{[]string{"help"}, "roles"},
		{[]string{"serve", "--help"}, "-listen"},
		{[]string{"serve", "-h"}, "-db"},
		{[]string{"fixtures", "--help"}, "generate"},
		{[]string{"fixtures", "-h"}, "load"},
		{[]string{"fixtures", "load", "--help"}, "-db"},
		{[]string{"fixtures", "generate", "--help"}, "-machines"},
		{[]string{"roles", "--help"}, "load"},
		{[]string{"roles", "-h"}, "load"},
		{[]string{"roles", "load", "--help"}, "-db"},
		{[]string{"sim", "--help"}, "fleet"},
		{[]string{"sim", "redfish", "--help"}, "-mockup"},
		{[]string{"sim", "fleet", "--help"}, "-machines"},
		{[]string{"version", "--help"}, "prybar"},
		{[]string{"users", "--help"}, "add"},
		{[]string{"users", "add", "--help"}, "-role"},
		{[]string{"tokens", "--help"}, "create"},
		{[]string{"tokens", "create", "--help"}, "-expires"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(context.Background(), tc.args, &out, &errb)
			if err != nil {
				t.Fatalf("exit error %v; stderr:\n%s", err, errb.String())
			}
			if tc.args[0] != "version" && !strings.Contains(strings.ToLower(out.String()), "usage") {
				t.Errorf("stdout has no usage:\n%s\nstderr:\n%s", out.String(), errb.String())
			}
			if !strings.Contains(out.String(), tc.want) {
				t.Errorf("usage does not mention %q:\n%s", tc.want, out.String())
			}
		})
	}
	// A bad flag still fails, with the usage on stderr.
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"serve", "--no-such-flag"}, &out, &errb); err == nil || !strings.Contains(errb.String(), "usage") {
		t.Errorf("bad flag: err %v, stderr %q", err, errb.String())
	}
}

// serve binds its listen address before it creates or migrates the database: a busy port fails
// at once, names the address, and leaves no database behind.
func TestServeChecksListenAddressBeforeDatabase(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	db := filepath.Join(dir, "p.db")
	var out, errb bytes.Buffer
	err = run(context.Background(), []string{"serve", "--listen", busy.Addr().String(), "--db", db,
		"--secret-key-file", filepath.Join(dir, "k")}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Fatalf("serve on a busy port: err %v, want one naming %s", err, busy.Addr())
	}
	if _, statErr := os.Stat(db); !os.IsNotExist(statErr) {
		t.Errorf("serve created or touched the database before checking the port (stat: %v)", statErr)
	}
}

// Storage errors name the database they are about.
func TestStorageErrorsNameTheDatabase(t *testing.T) {
	dir := t.TempDir()
	notADir := filepath.Join(dir, "file")
	if err := os.WriteFile(notADir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct{ db, want string }{
		"unwritable SQLite path": {filepath.Join(notADir, "p.db"), filepath.Join(notADir, "p.db")},
		"unreachable PostgreSQL": {"postgres://prybar@127.0.0.1:1/nodb?connect_timeout=2", "127.0.0.1:1/nodb"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var out, errb bytes.Buffer
			err := run(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--db", tc.db,
				"--secret-key-file", filepath.Join(dir, "key")}, &out, &errb)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to name %s", err, tc.want)
			}
			err = run(ctx, []string{"fixtures", "load", "--db", tc.db, "--secret-key-file", filepath.Join(dir, "key"), "demo"}, &out, &errb)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("fixtures load: err = %v, want it to name %s", err, tc.want)
			}
		})
	}
}

// A SIGTERM logs the drain: each thing shutdown waits for, and how long it took.
func TestShutdownLogsItsDrain(t *testing.T) {
	p := startServe(t, "--db", filepath.Join(t.TempDir(), "p.db"))
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, p.out)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("no exit within 60 s of SIGTERM\n%s", p.out)
	}
	logs := p.out.String()
	for _, want := range []string{"shutdown: HTTP drained", "shutdown: operations drained", "took=", "shutdown: annealer stopped", "shutdown complete", "drain_took="} {
		if !strings.Contains(logs, want) {
			t.Errorf("shutdown logs lack %q:\n%s", want, logs)
		}
	}
}
