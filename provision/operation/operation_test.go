package operation_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/bmc"
	"github.com/prybar/prybar/graph"
	"github.com/prybar/prybar/internal/apitest"
	"github.com/prybar/prybar/provision/oob"
	"github.com/prybar/prybar/provision/operation"
	"github.com/prybar/prybar/provision/redfish/redfishsim"
	"github.com/prybar/prybar/provision/redfish/redfishsim/redfishsimtest"
)

func mockup(t *testing.T, name string) string {
	t.Helper()
	return redfishsimtest.Mockup(t, name)
}

// powerAction and setBootDevice run as tracked operations: the mutation returns a PENDING
// operation, its progress and result arrive as events, and the simulated BMC really changes.
func TestPowerActionAndBootDeviceAsTrackedOperations(t *testing.T) {
	sim, err := redfishsim.New(redfishsim.Config{MockupDir: mockup(t, "public-rackmount1"), Username: "admin", Password: "pw", PowerDelay: 50 * time.Millisecond})
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
		m := tx.Machine.Create().SetName("op.test.example").SaveX(ctx)
		tx.BMC.Create().SetMachineID(m.ID).SetProtocol(bmc.ProtocolREDFISH).SetAddress(host).SetPort(port).
			SetScheme("http").SetUsername("admin").SetPassword("pw").SaveX(ctx)
		machineID = m.ID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	exec := oob.New(oob.Config{PollInterval: 50 * time.Millisecond, SettleTimeout: 10 * time.Second, CycleOffWindow: time.Second})
	runner := operation.New(st, exec, apitest.Quiet())
	srv := apitest.ServeWith(t, st, graph.Options{Operations: runner})

	sub, err := apitest.Subscribe(ctx, srv.URL, `subscription($f: EventFilter) { events(after: 0, filter: $f) { seq kind objectID machineID } }`,
		map[string]any{"f": map[string]any{"kinds": []string{"operation.created", "operation.updated"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	for _, tc := range []struct{ mutation, want string }{
		{fmt.Sprintf(`mutation { powerAction(machineID: %d, action: OFF) { operation { id state } errors { field code message } } }`, machineID), "Off"},
		{fmt.Sprintf(`mutation { powerAction(machineID: %d, action: ON) { operation { id state } errors { field code message } } }`, machineID), "On"},
		{fmt.Sprintf(`mutation { setBootDevice(machineID: %d, device: PXE) { operation { id state } errors { field code message } } }`, machineID), "Pxe"},
	} {
		var got map[string]struct {
			Operation struct{ ID, State string }
			Errors    []struct{ Field, Code, Message string }
		}
		srv.Query(t, tc.mutation, nil, &got)
		var opID string
		for _, p := range got {
			if len(p.Errors) > 0 {
				t.Fatalf("%s: %+v", tc.mutation, p.Errors)
			}
			opID = p.Operation.ID
		}
		// Follow the operation on the feed until it finishes.
		deadline := time.Now().Add(15 * time.Second)
		var state string
		for state != "SUCCEEDED" && state != "FAILED" {
			if time.Now().After(deadline) {
				t.Fatalf("operation %s did not finish (last state %q)", opID, state)
			}
			ev, err := sub.NextEvent(10 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if ev.ObjectID != opID {
				continue
			}
			if ev.MachineID != fmt.Sprint(machineID) {
				t.Fatalf("event %+v not located on machine %d", ev, machineID)
			}
			var op struct {
				Node struct{ State, Message string }
			}
			srv.Query(t, `query($id: ID!) { node(id: $id) { ... on Operation { state message } } }`, map[string]any{"id": opID}, &op)
			state = op.Node.State
			if state == "FAILED" {
				t.Fatalf("operation failed: %s", op.Node.Message)
			}
		}
		sys := sim.Resource("/redfish/v1/Systems/437XR1138R2")
		if tc.want == "Pxe" {
			boot, _ := sys["Boot"].(map[string]any)
			if boot["BootSourceOverrideTarget"] != "Pxe" || boot["BootSourceOverrideEnabled"] != "Once" {
				t.Fatalf("boot override = %v", boot)
			}
		} else if sys["PowerState"] != tc.want {
			t.Fatalf("PowerState = %v, want %s", sys["PowerState"], tc.want)
		}
	}
	runner.Wait()
	if n := sim.OpenSessions(); n != 0 {
		t.Fatalf("%d sessions left open on the BMC", n)
	}
	// Unknown machine and a machine without a BMC are domain errors.
	var bad struct {
		PowerAction struct {
			Errors []struct{ Field, Code string }
		}
	}
	srv.Query(t, `mutation { powerAction(machineID: 999999, action: ON) { errors { field code } } }`, nil, &bad)
	if len(bad.PowerAction.Errors) != 1 || bad.PowerAction.Errors[0].Code != "NOT_FOUND" {
		t.Fatalf("unknown machine: %+v", bad)
	}
}

func splitURL(t *testing.T, u string) (string, int) {
	u = strings.TrimPrefix(u, "http://")
	u = strings.TrimSuffix(u, "/")
	var host string
	var port int
	i := strings.LastIndex(u, ":")
	host = u[:i]
	fmt.Sscan(u[i+1:], &port)
	return host, port
}
