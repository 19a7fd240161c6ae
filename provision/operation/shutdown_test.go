package operation_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/bmc"
	"github.com/prybar/prybar/ent/operation"
	"github.com/prybar/prybar/internal/apitest"
	"github.com/prybar/prybar/provision/oob"
	ops "github.com/prybar/prybar/provision/operation"
	"github.com/prybar/prybar/provision/redfish/redfishsim"
)

// A server restarted right after a crash settles the operations the dead process left RUNNING at
// once (it is the only server: SQLite), not only those older than twice the executor timeout.
func TestRecoverSettlesOperationsOfADeadServerAtOnce(t *testing.T) {
	st := apitest.Open(t, apitest.DSN(t, apitest.SQLite))
	ctx := context.Background()
	var opID int
	err := st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		m := tx.Machine.Create().SetName("crashed.test.example").SaveX(ctx)
		opID = tx.Operation.Create().SetMachineID(m.ID).SetAction("power-on").SetOwner("deadhost/4242").
			SetState(operation.StateRUNNING).SetStartedAt(time.Now()).SaveX(ctx).ID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r := ops.New(st, oob.New(oob.Config{}), apitest.Quiet())
	n, err := r.Recover(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	got := st.Client.Operation.GetX(ctx, opID)
	if n != 1 || got.State != operation.StateABANDONED || got.FinishedAt == nil {
		t.Fatalf("after recovery: %d settled, operation %s (finished %v), want 1 ABANDONED", n, got.State, got.FinishedAt)
	}
	// A replica sharing the database (not sole) leaves young operations of other owners alone.
	err = st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		return tx.Operation.UpdateOneID(opID).SetState(operation.StateRUNNING).ClearFinishedAt().Exec(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r.Recover(ctx, false); err != nil || n != 0 {
		t.Fatalf("replica recovery settled %d (%v), want 0", n, err)
	}
}

// Shutdown cancels an operation that polls a BMC which will not reach the wanted state, records it
// ABANDONED with the reason, and returns promptly — before, the server waited for the executor's
// settle timeout (a minute by default) while holding the scheduler's leadership.
func TestShutdownCancelsAndRecordsOperations(t *testing.T) {
	sim, err := redfishsim.New(redfishsim.Config{MockupDir: mockup(t, "public-rackmount1"), Username: "admin", Password: "pw", PowerDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	url, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	host, port := splitURL(t, url)
	st := apitest.Open(t, apitest.DSN(t, apitest.SQLite))
	ctx := context.Background()
	var machineID int
	err = st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		m := tx.Machine.Create().SetName("slow.test.example").SaveX(ctx)
		tx.BMC.Create().SetMachineID(m.ID).SetProtocol(bmc.ProtocolREDFISH).SetAddress(host).SetPort(port).
			SetScheme("http").SetUsername("admin").SetPassword("pw").SaveX(ctx)
		machineID = m.ID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	exec := oob.New(oob.Config{PollInterval: 50 * time.Millisecond, SettleTimeout: time.Minute})
	r := ops.New(st, exec, apitest.Quiet())
	op, err := r.Start(ctx, machineID, "power-off", nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for st.Client.Operation.GetX(ctx, op.ID).State != operation.StateRUNNING && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the power-off was sent; the executor is polling
	done := make(chan struct{})
	start := time.Now()
	go func() { r.Shutdown(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Shutdown did not return within 20 s: it waits for the settle timeout")
	}
	t.Logf("Shutdown took %s", time.Since(start).Round(time.Millisecond))
	got := st.Client.Operation.GetX(ctx, op.ID)
	if got.State != operation.StateABANDONED || !strings.Contains(got.Message, "cancelled: the server shut down") {
		t.Fatalf("operation %s %q, want ABANDONED with the shutdown reason", got.State, got.Message)
	}
}
