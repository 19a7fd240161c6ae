package oob_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	entbmc "github.com/prybar/prybar/ent/bmc"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/bmc"
	"github.com/prybar/prybar/provision/oob"
	"github.com/prybar/prybar/provision/redfish/redfishsim"
	"github.com/prybar/prybar/scheduler/executor"
	"github.com/prybar/prybar/scheduler/executor/executortest"
)

// The bmc executor passes the executor conformance suite against the Redfish simulator. Its
// recovery input is rebuilt the way the annealer does after a restart: from the BMC record in the
// database (password sealed at rest) through bmc.FromRecord.
func TestBMCExecutorConformance(t *testing.T) {
	executortest.Run(t, func(t *testing.T) executortest.Case {
		// PowerDelay of an hour: a power-off is accepted and never completes (the slow input);
		// the machine is on, so power-on is a quick no-op whose effect Applied can confirm.
		f := newRedfish(t, "public-rackmount1", redfishsim.Config{PowerDelay: time.Hour})
		cfg := fastConfig(nil)
		cfg.SettleTimeout = time.Hour
		e := oob.New(cfg)
		quick := input(1, "conf.example.com", f.bmc, map[string]any{"action": "power-on"})
		slow := input(2, "conf.example.com", f.bmc, map[string]any{"action": "power-off"})
		return executortest.Case{
			Exec: e, Quick: quick, Slow: &slow,
			Rebuild: func(t *testing.T, in executor.Input) executor.Input {
				key := bytes.Repeat([]byte{7}, 32)
				st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "prybar.db"), store.Options{SecretKey: key})
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				var rec *ent.BMC
				err = st.Tx(context.Background(), func(ctx context.Context, tx *ent.Tx) error {
					m := tx.Machine.Create().SetName(in.Machine.Name).SaveX(ctx)
					b := in.Machine.BMC
					rec = tx.BMC.Create().SetMachineID(m.ID).SetProtocol(entbmc.ProtocolREDFISH).SetAddress(b.Address).
						SetPort(b.Port).SetScheme(b.Scheme).SetUsername(b.Username).SetPassword(b.Password).SaveX(ctx)
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				rec, err = st.Client.BMC.Get(context.Background(), rec.ID) // as stored: sealed
				if err != nil {
					t.Fatal(err)
				}
				ep, err := bmc.FromRecord(rec, st.SecretKey)
				if err != nil {
					t.Fatal(err)
				}
				out := in
				out.Machine.BMC = &ep
				return out
			},
		}
	})
}
