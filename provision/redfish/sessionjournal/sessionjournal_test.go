package sessionjournal_test

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/internal/secret"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/redfish"
	"github.com/prybar/prybar/provision/redfish/redfishsim"
	"github.com/prybar/prybar/provision/redfish/redfishsim/redfishsimtest"
	"github.com/prybar/prybar/provision/redfish/sessionjournal"
)

func open(t *testing.T, path string, key []byte) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), path, store.Options{SecretKey: key})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func key(t *testing.T) []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// crash opens n sessions through journalled clients and drops the clients without logging out,
// as a killed server does.
func crash(t *testing.T, sim *redfishsimtest.Sim, j redfish.SessionJournal, n int) {
	t.Helper()
	for range n {
		c := redfish.New(sim.Endpoint(), redfish.WithSessionJournal(j), redfish.WithTimeout(5*time.Second))
		if _, err := c.PowerState(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if got := sim.OpenSessions(); got != n {
		t.Fatalf("%d sessions open after the crash, want %d", got, n)
	}
}

// Issue 7, point 7a: sessions a crashed server left open are logged out when it restarts.
func TestStaleSessionsAreLoggedOutAfterACrash(t *testing.T) {
	for _, withKey := range []bool{true, false} {
		name := "sealed tokens"
		if !withKey {
			name = "no key: logout with the BMC credentials"
		}
		t.Run(name, func(t *testing.T) {
			sim := redfishsimtest.Start(t, "public-rackmount1", redfishsim.Config{})
			dbPath := filepath.Join(t.TempDir(), "prybar.db")
			var k []byte
			if withKey {
				k = key(t)
			}
			st := open(t, dbPath, k)
			// The BMC record holds the credentials LogoutStale falls back on.
			err := st.Tx(t.Context(), func(ctx context.Context, tx *ent.Tx) error {
				m, err := tx.Machine.Create().SetName("n1.test.example").Save(ctx)
				if err != nil {
					return err
				}
				return tx.BMC.Create().SetProtocol("REDFISH").SetAddress(sim.Host).SetPort(sim.Port).SetScheme("http").
					SetUsername(redfishsimtest.User).SetPassword(redfishsimtest.Password).SetMachineID(m.ID).Exec(ctx)
			})
			if err != nil {
				t.Fatal(err)
			}
			crash(t, sim, sessionjournal.New(st, nil), 3)
			rows := st.Client.BMCSession.Query().AllX(t.Context())
			if len(rows) != 3 {
				t.Fatalf("journal holds %d sessions, want 3", len(rows))
			}
			for _, r := range rows {
				if withKey && !secret.IsSealed(r.Token) {
					t.Errorf("token stored unsealed: %q", r.Token)
				}
				if !withKey && r.Token != "" {
					t.Errorf("token stored without a key to seal it")
				}
			}
			st.Close()

			// The restart: a new store on the same database, and the recovery.
			st = open(t, dbPath, k)
			defer st.Close()
			// Another server sharing the database does not see (or log out) this host's sessions.
			if other, err := sessionjournal.NewOwned(st, nil, "another-replica").Open(t.Context()); err != nil || len(other) != 0 {
				t.Fatalf("another owner's journal lists %d sessions (%v), want none", len(other), err)
			}
			n, err := redfish.LogoutStale(t.Context(), sessionjournal.New(st, nil))
			if err != nil || n != 3 {
				t.Fatalf("LogoutStale = %d, %v; want 3", n, err)
			}
			if got := sim.OpenSessions(); got != 0 {
				t.Fatalf("%d sessions still open on the BMC after the recovery", got)
			}
			if left := st.Client.BMCSession.Query().CountX(t.Context()); left != 0 {
				t.Fatalf("journal still lists %d sessions", left)
			}
		})
	}
}

// A clean logout and a session the BMC forgot (BMC reset) leave nothing in the journal; an
// unreachable BMC keeps its record for the next start.
func TestJournalFollowsLogoutsAndKeepsUnreachable(t *testing.T) {
	sim := redfishsimtest.Start(t, "public-rackmount1", redfishsim.Config{})
	st := open(t, filepath.Join(t.TempDir(), "prybar.db"), key(t))
	defer st.Close()
	j := sessionjournal.New(st, nil)
	err := redfish.WithSession(t.Context(), sim.Endpoint(), func(c *redfish.Client) error {
		_, err := c.PowerState(t.Context())
		if n := st.Client.BMCSession.Query().CountX(t.Context()); n != 1 {
			t.Errorf("journal holds %d sessions while one is open", n)
		}
		return err
	}, redfish.WithSessionJournal(j))
	if err != nil {
		t.Fatal(err)
	}
	if n := st.Client.BMCSession.Query().CountX(t.Context()); n != 0 {
		t.Fatalf("journal holds %d sessions after a logout", n)
	}

	crash(t, sim, j, 1)
	sim.Stop() // the BMC goes away
	n, err := redfish.LogoutStale(t.Context(), j, redfish.WithTimeout(300*time.Millisecond), redfish.WithRetry(1, time.Millisecond))
	if n != 0 || err == nil || !strings.Contains(err.Error(), "stale session") {
		t.Fatalf("LogoutStale on a dead BMC = %d, %v; want an error", n, err)
	}
	if left := st.Client.BMCSession.Query().CountX(t.Context()); left != 1 {
		t.Fatalf("journal lists %d sessions, want the unreachable one kept", left)
	}
	t.Log(err)
	// The simulator itself is closed; its session table is what the cleanup check reads, and the
	// session was never logged out, so clear it the way a BMC reboot would.
	sim.Simulator.ForgetSessions()
}
