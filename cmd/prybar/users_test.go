package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prybar/prybar/internal/auth"
)

// Bootstrapping from the command line: `users add` reads the password from stdin, `tokens create`
// prints a token once; `serve --tls-self-signed` generates a certificate on first start, keeps it
// across restarts, and the token and the password work over HTTPS.
func TestUsersTokensAndSelfSignedTLS(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "p.db")
	stdin = strings.NewReader("a-long-password\n")
	defer func() { stdin = os.Stdin }()
	if out := runCLI(t, "users", "add", "--db", db, "--role", "admin", "alice"); !strings.Contains(out, "alice (ADMIN) added") {
		t.Errorf("users add: %q", out)
	}
	stdin = strings.NewReader("short\n")
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"users", "add", "--db", db, "--role", "viewer", "bob"}, &out, &errb); err == nil || !strings.Contains(err.Error(), "at least") {
		t.Errorf("a short password: %v", err)
	}
	if err := run(context.Background(), []string{"tokens", "create", "--db", db, "--role", "root", "x"}, &out, &errb); err == nil || !strings.Contains(err.Error(), "unknown role") {
		t.Errorf("a bad role: %v", err)
	}
	tok := strings.TrimSpace(runCLI(t, "tokens", "create", "--db", db, "--role", "viewer", "--user", "alice", "--expires", "1h", "ci-read"))
	if !strings.HasPrefix(tok, auth.TokenPrefix) {
		t.Fatalf("token %q", tok)
	}

	fingerprint := func() [32]byte {
		data, err := os.ReadFile(filepath.Join(dir, "prybar-tls.crt"))
		if err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(data)
	}
	p := startServeTLS(t, "--db", db, "--tls-self-signed")
	first := fingerprint()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	req, _ := http.NewRequest(http.MethodPost, p.URL+"/graphql", strings.NewReader(`{"query":"{ whoami { name kind role } }"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var who struct {
		Data struct {
			Whoami struct{ Name, Kind, Role string }
		}
	}
	_ = json.NewDecoder(res.Body).Decode(&who)
	res.Body.Close()
	if who.Data.Whoami.Name != "ci-read" || who.Data.Whoami.Role != "VIEWER" {
		t.Errorf("whoami over HTTPS: %+v", who)
	}
	res, err = hc.Post(p.URL+"/auth/login", "application/json", strings.NewReader(`{"name":"alice","password":"a-long-password"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(res.Header.Get("Set-Cookie"), "Secure") {
		t.Errorf("sign-in over HTTPS: %d, cookie %q (want Secure)", res.StatusCode, res.Header.Get("Set-Cookie"))
	}
	p.kill()
	startServeTLS(t, "--db", db, "--tls-self-signed")
	if fingerprint() != first {
		t.Error("the self-signed certificate changed across restarts")
	}
}

var httpsURL = regexp.MustCompile(`serving at (https://\S+/)`)

// startServeTLS starts `prybar serve` on HTTPS (no token registered: the test brings its own).
func startServeTLS(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "PRYBAR_TEST_MAIN=1")
	cmd.Dir = t.TempDir()
	stdout, _ := cmd.StdoutPipe()
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, out: &logs}
	t.Cleanup(p.kill)
	buf := make([]byte, 4096)
	deadline := time.Now().Add(60 * time.Second)
	var seen string
	for time.Now().Before(deadline) {
		n, err := stdout.Read(buf)
		seen += string(buf[:n])
		if m := httpsURL.FindStringSubmatch(seen); m != nil {
			p.URL = strings.TrimSuffix(m[1], "/")
			go func() { _, _ = bytes.NewBuffer(nil).ReadFrom(stdout) }()
			return p
		}
		if err != nil {
			break
		}
	}
	t.Fatalf("prybar serve (TLS) did not start; stdout %q logs:\n%s", seen, logs.String())
	return nil
}
