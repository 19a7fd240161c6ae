package agentapi_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/prybar/prybar/provision/agent"
)

// BenchmarkRegister measures one agent registration over HTTP on SQLite: an unknown machine
// (created with 2 NICs and 2 disks) and a known one (merged, drift computed). sql/op is the
// machine-independent figure.
func BenchmarkRegister(b *testing.B) {
	inv0, err := agent.Collect("../agent/testdata/qemu-vm")
	if err != nil {
		b.Fatal(err)
	}
	for _, known := range []bool{false, true} {
		b.Run(fmt.Sprintf("known=%v", known), func(b *testing.B) {
			e := newEnvB(b)
			ctx := context.Background()
			mac := func(i int) string { return fmt.Sprintf("52:54:%02x:%02x:%02x:01", (i>>16)&0xff, (i>>8)&0xff, i&0xff) }
			if known {
				for i := range b.N {
					inv := inv0
					inv.NICs = []agent.NIC{{Name: "eth0", MAC: mac(i)}}
					inv.DMI.Serial, inv.DMI.UUID = fmt.Sprintf("S%d", i), ""
					if _, err := e.client(0, mac(i), "b0").Register(ctx, agent.Register{Trace: "b0", Inventory: inv}); err != nil {
						b.Fatal(err)
					}
				}
			}
			start := e.st.Counter.Statements()
			b.ResetTimer()
			for i := range b.N {
				inv := inv0
				inv.NICs = []agent.NIC{{Name: "eth0", MAC: mac(i)}}
				inv.DMI.Serial, inv.DMI.UUID = fmt.Sprintf("S%d", i), ""
				if _, err := e.client(0, mac(i), "b1").Register(ctx, agent.Register{Trace: "b1", Inventory: inv}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(e.st.Counter.Statements()-start)/float64(b.N), "sql/op")
		})
	}
}
