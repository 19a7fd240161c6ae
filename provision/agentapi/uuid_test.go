package agentapi_test

import (
	"context"
	"testing"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/provision/agent"
)

// A machine known only by its BMC holds the UUID the IPMI system GUID gave, in whichever byte
// order the BMC sent it and the GUID decoder guessed. The agent's DMI UUID finds it in every
// one of them (and only it: a machine with another UUID is not matched, and nothing is created).
func TestRegisterMatchesBMCGUIDByteOrders(t *testing.T) {
	inv := fixture(t, "qemu-vm") // DMI UUID 6f1c7a9e-2b4d-4c8e-9a31-0d5e7f6b1c22
	inv.DMI.Serial = ""          // a BMC-only machine has no serial on record to match by
	for name, recorded := range map[string]string{
		"as read":               "6f1c7a9e-2b4d-4c8e-9a31-0d5e7f6b1c22",
		"upper case":            "6F1C7A9E-2B4D-4C8E-9A31-0D5E7F6B1C22",
		"fields swapped":        "9e7a1c6f-4d2b-8e4c-9a31-0d5e7f6b1c22",
		"reversed":              "221c6b7f-5e0d-319a-8e4c-4d2b9e7a1c6f",
		"swapped then reversed": "221c6b7f-5e0d-319a-4c8e-2b4d6f1c7a9e",
		"reversed then swapped": "7f6b1c22-0d5e-9a31-8e4c-4d2b9e7a1c6f",
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			var id int
			e.tx(t, func(ctx context.Context, tx *ent.Tx) error {
				if err := tx.Machine.Create().SetName("other.lab.example").SetUUID("0b5f3c1e-7a2d-4e9b-8c6f-1d2e3f4a5b6c").Exec(ctx); err != nil {
					return err
				}
				m, err := tx.Machine.Create().SetName("bmc-only.lab.example").SetUUID(recorded).Save(ctx)
				id = m.ID
				return err
			})
			reg, err := e.client(0, vmMAC, "b1").Register(context.Background(), agent.Register{Trace: "b1", BootMAC: vmMAC, Inventory: inv})
			if err != nil {
				t.Fatal(err)
			}
			if reg.Machine != id || reg.Created {
				t.Fatalf("registered as %+v, want machine %d (bmc-only)", reg, id)
			}
			if n, _ := e.st.Client.Machine.Query().Count(context.Background()); n != 2 {
				t.Errorf("%d machines, want 2", n)
			}
		})
	}
}
