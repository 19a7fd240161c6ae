package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prybar/prybar/internal/apitest"
	"github.com/prybar/prybar/internal/pgtest"
)

// The test binary doubles as the prybar binary: with PRYBAR_TEST_MAIN=1 it runs main, so tests
// start real server processes without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("PRYBAR_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(pgtest.Main(m))
}

// proc is a prybar child process.
type proc struct {
	cmd *exec.Cmd
	URL string
	out *bytes.Buffer
}

var urlLine = regexp.MustCompile(`serving at (http://\S+/)`)

// startServe starts `prybar serve` with args and waits for its URL.
func startServe(t *testing.T, args ...string) *proc {
	t.Helper()
	// Tests poll the API in tight loops; the per-identity rate limit has its own test (graph).
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--listen", "127.0.0.1:0", "--rate-limit", "0"}, args...)...)
	cmd.Env = append(os.Environ(), "PRYBAR_TEST_MAIN=1")
	if extra := os.Getenv("PRYBAR_SERVE_EXTRA_ENV"); extra != "" {
		cmd.Env = append(cmd.Env, strings.Split(extra, "\x1f")...)
	}
	cmd.Dir = t.TempDir()
	stdout, _ := cmd.StdoutPipe()
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, out: &logs}
	t.Cleanup(func() { p.kill() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := urlLine.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case u := <-found:
		p.URL = strings.TrimSuffix(u, "/")
	case <-time.After(60 * time.Second):
		t.Fatalf("prybar serve did not start; logs:\n%s", logs.String())
	}
	// The API needs a credential: an admin token made with the CLI, as an operator would, is
	// what the URL-based test helpers (apitest.Client, apitest.Subscribe) send to this server.
	db := filepath.Join(cmd.Dir, "prybar.db")
	for i, a := range args {
		if a == "--db" && i+1 < len(args) {
			db = args[i+1]
		}
	}
	tokenSeq++
	tok := runCLI(t, "tokens", "create", "--db", db, "--role", "admin", fmt.Sprintf("test-admin-%d", tokenSeq))
	apitest.RegisterToken(p.URL, strings.TrimSpace(tok))
	return p
}

// tokenSeq names each test server's token uniquely (servers may share a database).
var tokenSeq int

func (p *proc) kill() {
	if p.cmd.Process != nil && p.cmd.ProcessState == nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	}
}

func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if err := run(context.Background(), args, &out, &errb); err != nil {
		t.Fatalf("prybar %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

func gql(t *testing.T, url, query string, out any) {
	t.Helper()
	resp, err := (&apitest.Client{URL: url}).Do(query, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Errors) > 0 {
		t.Fatalf("graphql errors: %+v", resp.Errors)
	}
	if out != nil {
		if err := resp.Decode(out); err != nil {
			t.Fatal(err)
		}
	}
}

func TestServeHealthAndGracefulShutdown(t *testing.T) {
	p := startServe(t, "--db", filepath.Join(t.TempDir(), "p.db"), "--fixtures", "demo")
	for _, path := range []string{"/healthz", "/readyz", "/"} {
		res, err := http.Get(p.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("GET %s = %d", path, res.StatusCode)
		}
		if path != "/" && res.Header.Get("X-Request-Id") == "" {
			t.Errorf("GET %s: no X-Request-Id", path)
		}
	}
	var got struct{ Machines struct{ TotalCount int } }
	gql(t, p.URL, `{ machines { totalCount } }`, &got)
	if got.Machines.TotalCount != 12 {
		t.Fatalf("demo machines = %d, want 12", got.Machines.TotalCount)
	}
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, p.out)
		}
		t.Logf("graceful shutdown in %s", time.Since(start))
	case <-time.After(15 * time.Second):
		t.Fatal("no exit within 15 s of SIGTERM")
	}
	if !strings.Contains(p.out.String(), "request_id=") {
		t.Errorf("logs carry no request id:\n%s", p.out)
	}
}

// Two server processes on one PostgreSQL database: a subscriber on the second receives what the
// first commits, and resumes without loss.
func TestTwoServerProcessesShareEvents(t *testing.T) {
	dsn := pgtest.New(t)
	a := startServe(t, "--db", dsn)
	b := startServe(t, "--db", dsn)
	var site struct {
		CreateSite struct{ Site struct{ ID string } }
	}
	gql(t, a.URL, `mutation { createSite(input: {name: "x"}) { site { id } } }`, &site)
	// Servers write their own events at start (roles, the system deployment): follow sites only.
	siteEvents := map[string]any{"kinds": []string{"site.created", "site.updated"}}
	sub, err := apitest.Subscribe(context.Background(), b.URL, apitest.EventsSubscription, map[string]any{"after": 0, "filter": siteEvents})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := sub.NextEvent(5 * time.Second)
	if err != nil || ev.Kind != "site.created" {
		t.Fatalf("backlog = %+v, %v", ev, err)
	}
	last := ev.Seq
	start := time.Now()
	gql(t, a.URL, fmt.Sprintf(`mutation { updateSite(id: %s, input: {description: "live"}) { site { id } } }`, site.CreateSite.Site.ID), nil)
	if ev, err = sub.NextEvent(time.Second); err != nil || ev.Seq <= last || ev.Kind != "site.updated" {
		t.Fatalf("live event across processes = %+v, %v", ev, err)
	}
	t.Logf("cross-process latency %s", time.Since(start))
	last = ev.Seq
	sub.Close()
	for i := 0; i < 100; i++ {
		gql(t, a.URL, fmt.Sprintf(`mutation { updateSite(id: %s, input: {description: "c%d"}) { site { id } } }`, site.CreateSite.Site.ID, i), nil)
	}
	sub, err = apitest.Subscribe(context.Background(), b.URL, apitest.EventsSubscription, map[string]any{"after": last, "filter": siteEvents})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for i := 1; i <= 100; i++ {
		ev, err := sub.NextEvent(5 * time.Second)
		if err != nil || ev.Seq <= last || ev.Kind != "site.updated" {
			t.Fatalf("resumed event %d = %+v after seq %d, %v", i, ev, last, err)
		}
		last = ev.Seq
	}
	if ev, err := sub.NextEvent(300 * time.Millisecond); err == nil {
		t.Fatalf("extra event: %+v", ev)
	}
}

// `prybar fixtures generate --machines 10000` then a topology query returns all of them.
func TestGenerate10000(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 10,000 machines")
	}
	db := filepath.Join(t.TempDir(), "big.db")
	start := time.Now()
	out := runCLI(t, "fixtures", "generate", "--machines", "10000", "--sites", "2", "--db", db)
	t.Logf("generate: %s in %s", strings.TrimSpace(out), time.Since(start))
	if !strings.Contains(out, "10000 machines") {
		t.Fatalf("generate said %q", out)
	}
	p := startServe(t, "--db", db)
	var got struct {
		Sites struct {
			Edges []struct {
				Node struct {
					Racks struct {
						Edges []struct {
							Node struct {
								Machines struct {
									Edges []struct{ Node struct{ Name string } }
								}
							}
						}
					}
				}
			}
		}
	}
	start = time.Now()
	gql(t, p.URL, `{ sites { edges { node { racks { edges { node { machines { edges { node { name nics { totalCount } bmc { address } } } } } } } } } } }`, &got)
	t.Logf("topology query over 10,000 machines: %s", time.Since(start))
	names := map[string]bool{}
	for _, s := range got.Sites.Edges {
		for _, r := range s.Node.Racks.Edges {
			for _, m := range r.Node.Machines.Edges {
				names[m.Node.Name] = true
			}
		}
	}
	if len(names) != 10000 || len(got.Sites.Edges) != 2 {
		t.Fatalf("topology returned %d distinct machines in %d sites, want 10000 in 2", len(names), len(got.Sites.Edges))
	}
}

func TestVersionAndUsage(t *testing.T) {
	if out := runCLI(t, "version"); !strings.HasPrefix(out, "prybar ") {
		t.Errorf("version = %q", out)
	}
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"frobnicate"}, &out, &errb); err == nil || !strings.Contains(errb.String(), "usage") {
		t.Errorf("unknown command: err %v, stderr %q", err, errb.String())
	}
}

// Two `prybar serve` processes on one PostgreSQL database: exactly one anneals; SIGKILL it
// mid-anneal and the other takes over within 15 s, recovers the runs the dead one left, and every
// node-role ends ACTIVE with its (non-idempotent) effect applied exactly once.
func TestLeaderKilledHandsOver(t *testing.T) {
	dsn := pgtest.New(t)
	effects := filepath.Join(t.TempDir(), "effects")
	env := []string{"PRYBAR_TEST_EFFECTS=" + effects, "PRYBAR_CONCURRENCY=8"}
	key := filepath.Join(t.TempDir(), "prybar.key") // replicas share one key
	a := startServeEnv(t, env, "--db", dsn, "--secret-key-file", key)
	b := startServeEnv(t, env, "--db", dsn, "--secret-key-file", key)
	const machines = 40
	runCLI(t, "fixtures", "generate", "--machines", fmt.Sprint(machines), "--db", dsn, "--secret-key-file", key)

	var ms struct {
		Machines struct {
			Edges []struct{ Node struct{ ID string } }
		}
	}
	gql(t, a.URL, `{ machines { edges { node { id } } } }`, &ms)
	var sys struct {
		Deployments struct {
			Edges []struct{ Node struct{ ID string } }
		}
	}
	gql(t, a.URL, `{ deployments(where: {name: "system"}) { edges { node { id } } } }`, &sys)
	depID := sys.Deployments.Edges[0].Node.ID
	for _, m := range ms.Machines.Edges {
		gql(t, a.URL, fmt.Sprintf(`mutation { updateMachine(id: %s, input: {alive: true}) { errors { code } } }`, m.Node.ID), nil)
		gql(t, a.URL, fmt.Sprintf(`mutation { bindRole(machineID: %s, role: "test-step") { errors { code message } } }`, m.Node.ID), nil)
	}
	for path, value := range map[string]string{"/delay": `"400ms"`, "/effect": `"booted"`} {
		gql(t, a.URL, fmt.Sprintf(`mutation { setAttribute(deploymentID: %s, role: "test-step", path: "%s", value: %s) { errors { code message } } }`, depID, path, value), nil)
	}
	leaderOf := func(p *proc) bool {
		var s struct{ Annealer struct{ Leader bool } }
		resp, err := (&apitest.Client{URL: p.URL}).Do(`{ annealer { leader } }`, nil)
		if err != nil || resp.Decode(&s) != nil {
			return false
		}
		return s.Annealer.Leader
	}
	deadline := time.Now().Add(15 * time.Second)
	for leaderOf(a) == leaderOf(b) {
		if time.Now().After(deadline) {
			t.Fatalf("no single leader: a=%t b=%t", leaderOf(a), leaderOf(b))
		}
		time.Sleep(100 * time.Millisecond)
	}
	leader, survivor := a, b
	if leaderOf(b) {
		leader, survivor = b, a
	}
	gql(t, survivor.URL, fmt.Sprintf(`mutation { commitDeployment(id: %s) { errors { code message } } }`, depID), nil)
	// Kill the leader once some, not all, effects have happened.
	for {
		data, _ := os.ReadFile(effects)
		if n := strings.Count(string(data), "\n"); n >= 3 {
			break
		}
		if time.Now().After(deadline.Add(30 * time.Second)) {
			var st struct {
				Annealer struct {
					States []struct {
						State string
						Count int
					}
				}
				NodeRoles struct {
					Edges []struct {
						Node struct{ State, Status string }
					}
				}
			}
			gql(t, survivor.URL, `{ annealer { states { state count } } nodeRoles(first: 3) { edges { node { state status } } } }`, &st)
			t.Fatalf("the leader ran nothing: %+v\n%s", st, leader.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	killed := time.Now()
	leader.kill()
	for !leaderOf(survivor) {
		if time.Since(killed) > 15*time.Second {
			t.Fatal("the survivor did not take over within 15 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("takeover after %s", time.Since(killed).Round(time.Millisecond))
	var nrs struct {
		NodeRoles struct {
			TotalCount int
			Edges      []struct {
				Node struct {
					ID, State string
					Runs      struct {
						Edges []struct{ Node struct{ Status string } }
					}
				}
			}
		}
	}
	for {
		gql(t, survivor.URL, `{ nodeRoles(where: {hasRoleWith: {name: "test-step"}}) { totalCount edges { node { id state runs { edges { node { status } } } } } } }`, &nrs)
		active := 0
		for _, e := range nrs.NodeRoles.Edges {
			if e.Node.State == "ACTIVE" {
				active++
			} else if e.Node.State == "ERROR" {
				t.Fatalf("node-role %s ended in ERROR", e.Node.ID)
			}
		}
		if active == machines {
			break
		}
		if time.Since(killed) > 60*time.Second {
			t.Fatalf("%d of %d ACTIVE a minute after the kill", active, machines)
		}
		time.Sleep(200 * time.Millisecond)
	}
	data, _ := os.ReadFile(effects)
	perNodeRole := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		perNodeRole[strings.Fields(line)[0]]++
	}
	abandoned := 0
	for _, e := range nrs.NodeRoles.Edges {
		if perNodeRole[e.Node.ID] != 1 {
			t.Errorf("node-role %s: effect applied %d times", e.Node.ID, perNodeRole[e.Node.ID])
		}
		succeeded := 0
		for _, r := range e.Node.Runs.Edges {
			switch r.Node.Status {
			case "SUCCEEDED":
				succeeded++
			case "ABANDONED":
				abandoned++
			}
		}
		if succeeded > 1 {
			t.Errorf("node-role %s succeeded %d times", e.Node.ID, succeeded)
		}
	}
	t.Logf("%d node-roles ACTIVE, %d runs abandoned by the killed leader and recovered", machines, abandoned)
}

// startServeEnv is startServe with extra environment.
func startServeEnv(t *testing.T, env []string, args ...string) *proc {
	t.Setenv("PRYBAR_SERVE_EXTRA_ENV", strings.Join(env, "\x1f"))
	return startServe(t, args...)
}
