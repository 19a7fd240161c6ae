package oob_test

import (
	"errors"
	"net"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prybar/prybar/provision/oob"
	"github.com/prybar/prybar/provision/redfish/redfishsim"
	"github.com/prybar/prybar/scheduler/executor"
)

// A BMC that dies after accepting a power-on must not be polled until the settle timeout: after
// MaxUnreachable consecutive connection failures the run fails with ErrUnreachable. Before, the
// executor polled the dead BMC for the whole SettleTimeout (here 60 s; the test's context is
// shorter, so it failed with a context error instead).
func TestDeadBMCFailsAsUnreachable(t *testing.T) {
	dir, err := redfishsim.FindMockup("public-rackmount1")
	if err != nil {
		t.Skip(err)
	}
	sim, err := redfishsim.New(redfishsim.Config{MockupDir: dir, Username: user, Password: pass, PowerDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	srv := httptest.NewServer(sim.Handler())
	defer srv.Close()
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	b := &executor.BMC{Protocol: "redfish", Address: host, Port: p, Scheme: "http", Username: user, Password: pass}

	cfg := fastConfig(nil)
	cfg.SettleTimeout = 60 * time.Second
	cfg.PollInterval = 20 * time.Millisecond
	cfg.MaxUnreachable = 3
	e := oob.New(cfg)
	// Kill the BMC (listener closed, connections dropped) as soon as the power action arrives.
	go func() {
		for {
			for _, op := range sim.Ops() {
				if op.ResetType != "" {
					srv.CloseClientConnections()
					srv.Listener.Close()
					return
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	ctx := ctxT(t) // 60 s, as long as the settle timeout: a fast failure must come from the executor
	start := time.Now()
	_, err = e.Run(ctx, input(1, "dead.example.com", b, map[string]any{"action": "power-off"}))
	took := time.Since(start)
	if !errors.Is(err, oob.ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	t.Logf("failed after %s: %v", took.Round(time.Millisecond), err)
	if took > 30*time.Second {
		t.Errorf("took %s: the executor waited out the settle timeout", took)
	}
}
