package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prybar/prybar/internal/apitest"
	"github.com/prybar/prybar/provision/redfish/redfishsim/redfishsimtest"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// `prybar sim fleet` starts the BMCs, registers them in a running Prybar and prints a summary
// when interrupted.
func TestSimFleetRegisters(t *testing.T) {
	mockup := redfishsimtest.Mockup(t, "public-rackmount1")
	st := apitest.Open(t, filepath.Join(t.TempDir(), "prybar.db"))
	srv := apitest.Serve(t, st)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"sim", "fleet", "--machines", "4", "--mockup", mockup, "--prybar", srv.URL, "--token", srv.Token, "--alive", "--stats-every", "0"}, &out, &out)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "registered in") {
		if time.Now().After(deadline) {
			t.Fatalf("no registration:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "4 machines created") || !strings.Contains(s, "summary: 4 BMCs (2 Redfish, 2 IPMI)") {
		t.Fatalf("output:\n%s", s)
	}
	if n, _ := st.Client.BMC.Query().Count(context.Background()); n != 4 {
		t.Fatalf("%d BMCs registered", n)
	}
}

// `prybar sim fleet --agents` needs a boot URL; with one it records each machine's UUID (so an
// IPMI machine's agent can be matched) and reports its agents in the summary.
func TestSimFleetAgents(t *testing.T) {
	mockup := redfishsimtest.Mockup(t, "public-rackmount1")
	var out syncBuffer
	if err := run(context.Background(), []string{"sim", "fleet", "--agents", "--machines", "2", "--mockup", mockup}, &out, &out); err == nil ||
		!strings.Contains(err.Error(), "--boot-url") {
		t.Fatalf("--agents without a URL: %v", err)
	}
	st := apitest.Open(t, filepath.Join(t.TempDir(), "prybar.db"))
	srv := apitest.Serve(t, st)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"sim", "fleet", "--agents", "--machines", "4", "--first-index", "100", "--mockup", mockup, "--prybar", srv.URL,
			"--token", srv.Token, "--stats-every", "0"}, &out, &out)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "registered in") {
		if time.Now().After(deadline) {
			t.Fatalf("no registration:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "summary: agents: 0 running, 0 PXE boots") {
		t.Fatalf("output:\n%s", s)
	}
	ms, err := st.Client.Machine.Query().All(context.Background())
	if err != nil || len(ms) != 4 {
		t.Fatalf("%d machines: %v", len(ms), err)
	}
	for _, m := range ms {
		if m.UUID == "" || !strings.HasPrefix(m.Name, "sim-010") {
			t.Errorf("machine %s has UUID %q; want sim-0100… with a UUID", m.Name, m.UUID)
		}
	}
}

func TestSecretKeyPath(t *testing.T) {
	for dsn, want := range map[string]string{
		"":                        "prybar.key",
		"/var/lib/prybar/p.db":    "/var/lib/prybar/prybar.key",
		"sqlite:///srv/x.db":      "/srv/prybar.key",
		"file:/srv/y.db?cache=sh": "/srv/prybar.key",
		"postgres://u@h/db":       "prybar.key",
	} {
		if got := secretKeyPath("", dsn); got != want {
			t.Errorf("secretKeyPath(%q) = %q, want %q", dsn, got, want)
		}
	}
	if got := secretKeyPath("/etc/k", "x.db"); got != "/etc/k" {
		t.Errorf("flag ignored: %q", got)
	}
}
