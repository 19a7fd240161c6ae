package scheduler

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/bmc"
	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/ent/role"
	"github.com/prybar/prybar/internal/secret"
	"github.com/prybar/prybar/scheduler/executor"
)

// fakeOOB stands in for the bmc executor: out of band, succeeds at once.
type fakeOOB struct{ executor.Noop }

func (fakeOOB) Name() string    { return "bmc" }
func (fakeOOB) OutOfBand() bool { return true }

// A BMC password that cannot be opened fails that machine's out-of-band run with a clear message;
// every other machine, and in-band roles on the same machine, go on.
func TestUnopenableBMCPasswordFailsOnlyItsMachine(t *testing.T) {
	e := newEnv(t, "", Options{})
	// The store's key opens passwords (bmc.FromRecord, the one unsealing path); the hook that
	// seals on write is not installed here, so the test can store a value sealed with another key.
	e.st.SecretKey = bytes.Repeat([]byte{1}, 32)
	other, err := secret.Seal(bytes.Repeat([]byte{2}, 32), "secret")
	if err != nil {
		t.Fatal(err)
	}
	good, err := secret.Seal(e.st.SecretKey, "fine")
	if err != nil {
		t.Fatal(err)
	}
	e.a.Registry().Register(fakeOOB{})
	ctx := context.Background()
	ms := e.machines(3, "pw")
	err = e.st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		for i, m := range ms {
			pw := good
			if i == 0 {
				pw = other
			}
			if err := tx.BMC.Create().SetMachineID(m).SetProtocol(bmc.ProtocolIPMI).SetAddress("127.0.0.1").SetPassword(pw).Exec(ctx); err != nil {
				return err
			}
		}
		// Fail for good at once instead of retrying with backoff.
		return tx.Role.Update().Where(role.Name("bmc-power-on")).SetRetryAttempts(1).Exec(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"bmc-power-on", "test-step"} {
		if _, err := e.a.BindRoles(ctx, ms, r, e.sys.ID); err != nil {
			t.Fatal(err)
		}
	}
	e.start()
	if _, err := e.a.CommitDeployment(ctx, e.sys.ID); err != nil {
		t.Fatal(err)
	}
	e.settle(30 * time.Second)
	nrs := e.st.Client.NodeRole.Query().WithRole().AllX(ctx)
	for _, nr := range nrs {
		bad := nr.MachineID == ms[0] && nr.Edges.Role.Name == "bmc-power-on"
		if bad {
			if nr.State != noderole.StateERROR || !strings.Contains(nr.Status, "cannot be opened") {
				t.Errorf("bad machine's bmc-power-on: %s %q", nr.State, nr.Status)
			}
		} else if nr.State != noderole.StateACTIVE {
			t.Errorf("machine %d %s: %s %q, want ACTIVE", nr.MachineID, nr.Edges.Role.Name, nr.State, nr.Status)
		}
	}
}
