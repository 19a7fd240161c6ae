package redfish_test

import (
	"errors"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/prybar/prybar/provision/bmc"
	"github.com/prybar/prybar/provision/redfish"
	"github.com/prybar/prybar/provision/redfish/redfishsim"
)

// Issue 7, point 1: a request that changes the machine (a reset, a login) is never repeated
// because its answer was lost. The simulator carries the request out and then loses the answer
// (a 500, a dropped connection, or an answer slower than the client's timeout); the machine must
// be reset exactly once and no session may be left behind.

const rackSystem = "/redfish/v1/Systems/437XR1138R2"

// actThenFail are the ways a BMC loses an answer after acting, with the client options that make
// the late answer late.
var actThenFail = []struct {
	name   string
	faults redfishsim.Faults
	opts   []redfish.Option
}{
	{"500 after acting", redfishsim.Faults{AfterActError: 1}, nil},
	{"dropped after acting", redfishsim.Faults{AfterActDrop: 1}, nil},
	{"answer after the client timeout", redfishsim.Faults{AfterActDelay: 600 * time.Millisecond},
		[]redfish.Option{redfish.WithTimeout(150 * time.Millisecond)}},
}

func TestResetIsNotRepeatedWhenItsAnswerIsLost(t *testing.T) {
	for _, tc := range actThenFail {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "public-rackmount1", redfishsim.Config{})
			c := f.client(t, tc.opts...)
			if _, err := c.PowerState(ctxT(t)); err != nil { // log in before the fault
				t.Fatal(err)
			}
			f.sim.SetFaults(tc.faults)
			// ForceRestart reboots the machine each time it is sent.
			if err := c.Power(ctxT(t), bmc.ActionReset); err != nil {
				t.Fatalf("reset: %v (the BMC did reset; LastResetTime says so)", err)
			}
			f.sim.SetFaults(redfishsim.Faults{})
			if got := f.sim.Resets(rackSystem); !slices.Equal(got, []string{"ForceRestart"}) {
				t.Fatalf("resets carried out = %v, want exactly one ForceRestart", got)
			}
		})
	}
}

func TestPowerCycleIsNotRepeatedWhenItsAnswerIsLost(t *testing.T) {
	for _, tc := range actThenFail {
		t.Run(tc.name, func(t *testing.T) {
			tr := baseTree("/redfish/v1/Systems/S")
			tr["/redfish/v1/Systems/S"] = system("S", "On", map[string]any{
				"target":                            "/redfish/v1/Systems/S/Actions/ComputerSystem.Reset",
				"ResetType@Redfish.AllowableValues": []any{"On", "ForceOff", "PowerCycle"},
			})
			f := syntheticFixture(t, tr)
			c := f.client(t, tc.opts...)
			if _, err := c.PowerState(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			f.sim.SetFaults(tc.faults)
			if err := c.Power(ctxT(t), bmc.ActionCycle); err != nil {
				t.Fatalf("cycle: %v", err)
			}
			f.sim.SetFaults(redfishsim.Faults{})
			if got := f.sim.Resets("/redfish/v1/Systems/S"); !slices.Equal(got, []string{"PowerCycle"}) {
				t.Fatalf("resets carried out = %v, want exactly one PowerCycle", got)
			}
			// The cycle's off and on phases take two power delays (10 ms each here).
			deadline := time.Now().Add(2 * time.Second)
			for len(f.sim.Boots("/redfish/v1/Systems/S")) == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if boots := f.sim.Boots("/redfish/v1/Systems/S"); len(boots) != 1 {
				t.Errorf("system booted %d times, want once", len(boots))
			}
		})
	}
}

// Without LastResetTime the client cannot tell; it must say so rather than cycle again.
func TestLostResetAnswerWithoutLastResetTimeIsOutcomeUnknown(t *testing.T) {
	dir, err := redfishsim.FindMockup("public-rackmount1")
	if err != nil {
		t.Skip(err)
	}
	f := newFixtureDir(t, dir, redfishsim.Config{OmitLastResetTime: true})
	c := f.client(t)
	if _, err := c.PowerState(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	f.sim.SetFaults(redfishsim.Faults{AfterActError: 1})
	err = c.Power(ctxT(t), bmc.ActionReset)
	if !errors.Is(err, redfish.ErrOutcomeUnknown) {
		t.Fatalf("err = %v, want ErrOutcomeUnknown", err)
	}
	t.Log(err)
	if got := f.sim.Resets(rackSystem); !slices.Equal(got, []string{"ForceRestart"}) {
		t.Fatalf("resets carried out = %v, want exactly one", got)
	}
}

// On and Off settle into a state, so after a lost answer the client reads the state: the
// machine ends up on, and it is never cycled.
func TestPowerOnAfterLostAnswerEndsOn(t *testing.T) {
	for _, tc := range actThenFail {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "public-rackmount1", redfishsim.Config{})
			c := f.client(t, tc.opts...)
			if err := c.Power(ctxT(t), bmc.ActionOff); err != nil {
				t.Fatal(err)
			}
			waitPower(t, c, bmc.PowerOff)
			f.sim.SetFaults(tc.faults)
			if err := c.Power(ctxT(t), bmc.ActionOn); err != nil {
				t.Fatalf("on: %v", err)
			}
			f.sim.SetFaults(redfishsim.Faults{})
			waitPower(t, c, bmc.PowerOn)
			for _, rt := range f.sim.Resets(rackSystem) {
				if rt != "On" && rt != "ForceOff" {
					t.Errorf("unexpected reset %s", rt)
				}
			}
			if n := len(f.sim.Boots(rackSystem)); n != 1 {
				t.Errorf("machine booted %d times, want once", n)
			}
		})
	}
}

// A login whose answer is lost may have created a session; the client finds it by its Context,
// deletes it, and logs in again: never two sessions at once, none left over.
func TestLoginIsNotRepeatedBlindly(t *testing.T) {
	for _, tc := range actThenFail[:2] {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "public-rackmount1", redfishsim.Config{})
			f.sim.SetFaults(tc.faults)
			c := redfish.New(f.ep, fastOpts()...)
			if _, err := c.PowerState(ctxT(t)); err != nil {
				t.Fatalf("PowerState: %v", err)
			}
			if err := c.Close(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			if f.sim.PeakSessions() != 1 || f.sim.OpenSessions() != 0 {
				t.Fatalf("peak %d open %d sessions, want 1 and 0", f.sim.PeakSessions(), f.sim.OpenSessions())
			}
		})
	}
}

// Issue 7, point 6: a login that times out must not leave a session once the BMC answers.
func TestSlowLoginLeavesNoSession(t *testing.T) {
	f := newFixture(t, "public-rackmount1", redfishsim.Config{})
	f.sim.SetFaults(redfishsim.Faults{AfterActDelay: 500 * time.Millisecond})
	c := redfish.New(f.ep, fastOpts(redfish.WithTimeout(100*time.Millisecond))...)
	_, err := c.PowerState(ctxT(t))
	if err == nil {
		t.Fatal("PowerState succeeded although the login answer came after the timeout")
	}
	if !errors.Is(err, redfish.ErrUnreachable) {
		t.Errorf("err = %v, want ErrUnreachable", err)
	}
	t.Log(err)
	// The BMC created the session; its answer arrives late and the client deletes it then,
	// without waiting for Close.
	deadline := time.Now().Add(5 * time.Second)
	for f.sim.PeakSessions() == 0 || f.sim.OpenSessions() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("peak %d open %d: the late session was not logged out", f.sim.PeakSessions(), f.sim.OpenSessions())
		}
		time.Sleep(20 * time.Millisecond)
	}
	logins := 0
	for _, op := range f.sim.Ops() {
		if op.Method == http.MethodPost && op.Acted {
			logins++
		}
	}
	if logins != 1 {
		t.Errorf("%d sessions created, want 1 (a timed-out login must not be repeated)", logins)
	}
	f.sim.SetFaults(redfishsim.Faults{})
	_ = c.Close(ctxT(t))
}

func TestDeadBMCIsUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	_ = ln.Close() // nothing listens there now
	c := redfish.New(bmc.Endpoint{Address: "127.0.0.1", Port: addr.Port, Scheme: "http", Username: "u", Password: "p"}, fastOpts()...)
	defer c.Close(t.Context())
	_, err = c.PowerState(ctxT(t))
	if !errors.Is(err, redfish.ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
}
