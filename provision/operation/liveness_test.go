package operation_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/operation"
	"github.com/prybar/prybar/internal/apitest"
	"github.com/prybar/prybar/internal/pgtest"
	"github.com/prybar/prybar/provision/oob"
	ops "github.com/prybar/prybar/provision/operation"
	"github.com/prybar/prybar/scheduler/leader"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// On PostgreSQL (replicas) an operation is settled when its owner no longer holds its liveness
// lock — at once, however young — and never while its owner lives, however old. Before, replicas
// used an age rule: a dead server's young operation stayed RUNNING for twice the executor timeout.
func TestRecoverSettlesByOwnerLiveness(t *testing.T) {
	dsn := apitest.DSN(t, apitest.Postgres)
	st := apitest.Open(t, dsn)
	ctx := context.Background()
	dead, err := leader.Register(ctx, dsn, "dead")
	if err != nil {
		t.Fatal(err)
	}
	live, err := leader.Register(ctx, dsn, "live")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	me, err := leader.Register(ctx, dsn, "me")
	if err != nil {
		t.Fatal(err)
	}
	defer me.Close()
	var deadOp, liveOp int
	err = st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		m := tx.Machine.Create().SetName("replicas.test.example").SaveX(ctx)
		deadOp = tx.Operation.Create().SetMachineID(m.ID).SetAction("power-on").SetOwner("dead").SetOwnerEpoch(int(dead.ID())).
			SetState(operation.StateRUNNING).SetStartedAt(time.Now()).SaveX(ctx).ID
		liveOp = tx.Operation.Create().SetMachineID(m.ID).SetAction("power-off").SetOwner("live").SetOwnerEpoch(int(live.ID())).
			SetState(operation.StateRUNNING).SetStartedAt(time.Now().Add(-24 * time.Hour)).SaveX(ctx).ID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r := ops.New(st, oob.New(oob.Config{}), apitest.Quiet())
	r.SetInstance(me)
	if n, err := r.Recover(ctx, false); err != nil || n != 0 {
		t.Fatalf("while both owners live: %d settled (%v), want 0", n, err)
	}
	dead.Close() // the owner dies (its lock connection ends)
	// PostgreSQL releases the lock when the backend has exited, a moment after the client hung up.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		n, err := r.Recover(ctx, false)
		if err != nil || n > 1 {
			t.Fatalf("after the owner died: %d settled (%v), want 1", n, err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dead owner's operation was not settled within 10 s")
		}
	}
	if got := st.Client.Operation.GetX(ctx, deadOp); got.State != operation.StateABANDONED || got.FinishedAt == nil {
		t.Errorf("dead owner's operation %s, want ABANDONED", got.State)
	}
	if got := st.Client.Operation.GetX(ctx, liveOp); got.State != operation.StateRUNNING {
		t.Errorf("live owner's operation %s, want RUNNING (its owner still holds its lock)", got.State)
	}
}
