package ipmi_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prybar/prybar/provision/bmc"
	"github.com/prybar/prybar/provision/ipmi"
	"github.com/prybar/prybar/provision/ipmi/ipmisim"
)

var _ bmc.Controller = (*ipmi.Client)(nil)

// blackHole is a UDP socket that reads and never answers: a BMC that is down but whose host
// does not send ICMP unreachable (the usual case behind a firewall).
func blackHole(t *testing.T) (port int, received *atomic.Int64) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	received = new(atomic.Int64)
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			received.Add(1)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).Port, received
}

func TestTimeoutIsBoundedAndClear(t *testing.T) {
	port, received := blackHole(t)
	ep := bmc.Endpoint{Address: "127.0.0.1", Port: port, Username: "admin", Password: "password"}
	c := ipmi.New(ep, ipmi.WithTimeout(300*time.Millisecond), ipmi.WithRetries(2), ipmi.WithBackoff(50*time.Millisecond, 100*time.Millisecond))
	t0 := time.Now()
	_, err := c.PowerState(context.Background())
	elapsed := time.Since(t0)
	if err == nil {
		t.Fatal("no error from a silent BMC")
	}
	// 3 attempts x 300 ms + 150 ms of backoff, with slack for -race on a busy machine.
	if elapsed > 3*time.Second {
		t.Fatalf("took %s", elapsed)
	}
	var e *ipmi.Error
	if !errors.As(err, &e) || e.Attempts != 3 {
		t.Fatalf("want *ipmi.Error after 3 attempts, got %#v", err)
	}
	if !errors.Is(err, bmc.ErrUnknownPowerState) || !errors.Is(err, ipmi.ErrTimeout) {
		t.Fatalf("error chain lacks ErrUnknownPowerState or ErrTimeout: %v", err)
	}
	if addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port)); !strings.Contains(err.Error(), addr) {
		t.Fatalf("error does not name %s: %v", addr, err)
	}
	if received.Load() < 3 {
		t.Fatalf("black hole saw %d datagrams; retries did not happen", received.Load())
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatalf("close after failed connect: %v", err)
	}
	t.Logf("%s: %v", elapsed, err)
}

// A closed port answers with ICMP unreachable: a transport error, retried, then reported.
func TestDeadPort(t *testing.T) {
	// Bind and close to get a port nobody listens on.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	c := ipmi.New(bmc.Endpoint{Address: "127.0.0.1", Port: port, Username: "u", Password: "p"},
		ipmi.WithTimeout(300*time.Millisecond), ipmi.WithRetries(1), ipmi.WithBackoff(10*time.Millisecond, 10*time.Millisecond))
	t0 := time.Now()
	err = c.Power(context.Background(), bmc.ActionOn)
	if err == nil || time.Since(t0) > 2*time.Second || !strings.Contains(err.Error(), "127.0.0.1:"+strconv.Itoa(port)) {
		t.Fatalf("dead port: %v after %s", err, time.Since(t0))
	}
	t.Logf("%s: %v", time.Since(t0), err)
}

// The caller's context wins over retries and backoff.
func TestContextCancelStopsRetries(t *testing.T) {
	port, _ := blackHole(t)
	c := ipmi.New(bmc.Endpoint{Address: "127.0.0.1", Port: port, Username: "u", Password: "p"},
		ipmi.WithTimeout(5*time.Second), ipmi.WithRetries(5))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err := c.PowerState(ctx)
	if err == nil || time.Since(t0) > time.Second || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ctx deadline not honoured: %v after %s", err, time.Since(t0))
	}
}

// A power cycle whose answer is lost is not re-issued by the client: cycling a machine twice
// is worse than reporting an unknown outcome. The BMC here answers the handshake but stalls
// chassis commands beyond the client's timeout.
func TestNonIdempotentNotResent(t *testing.T) {
	sim := ipmisim.New(ipmisim.Config{PoweredOn: true, OpLatency: 1500 * time.Millisecond})
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	c := ipmi.New(sim.Endpoint(), ipmi.WithCipherSuite(3), ipmi.WithTimeout(700*time.Millisecond), ipmi.WithRetries(1), ipmi.WithBackoff(10*time.Millisecond, 10*time.Millisecond))
	defer c.Close(context.Background())
	err := c.Power(context.Background(), bmc.ActionCycle)
	var e *ipmi.Error
	if err == nil || !errors.As(err, &e) || e.Attempts != 1 || !strings.Contains(err.Error(), "outcome unknown") || !errors.Is(err, ipmi.ErrTimeout) {
		t.Fatalf("want one attempt with unknown outcome, got %v", err)
	}
	time.Sleep(2 * time.Second) // let the stalled command(s) finish on the BMC
	cycles := 0
	for _, l := range sim.Log() {
		if l == "chassis power cycle" {
			cycles++
		}
	}
	if cycles != 1 {
		t.Fatalf("BMC executed %d power cycles, want 1; log %q", cycles, sim.Log())
	}

	// An idempotent action in the same situation is retried (and then gives up, bounded).
	t0 := time.Now()
	err = c.Power(context.Background(), bmc.ActionOn)
	if !errors.As(err, &e) || e.Attempts != 2 || !errors.Is(err, ipmi.ErrTimeout) {
		t.Fatalf("power on: want 2 attempts ending in a timeout, got %v", err)
	}
	t.Logf("idempotent retry gave up after %s: %v", time.Since(t0), err)
	time.Sleep(1600 * time.Millisecond)
	ons := 0
	for _, l := range sim.Log() {
		if l == "chassis power on" {
			ons++
		}
	}
	if ons != 2 {
		t.Fatalf("BMC executed power on %d times, want 2 (one per attempt); log %q", ons, sim.Log())
	}
}

func TestInvalidInput(t *testing.T) {
	c := ipmi.New(bmc.Endpoint{Address: "127.0.0.1"})
	if c.Address() != "127.0.0.1:623" {
		t.Fatalf("default port: %s", c.Address())
	}
	if err := c.Power(context.Background(), "explode"); err == nil {
		t.Fatal("bad action accepted")
	}
	if err := c.SetBootDevice(context.Background(), "floppy", bmc.BootOptions{}); err == nil {
		t.Fatal("bad boot device accepted")
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}
