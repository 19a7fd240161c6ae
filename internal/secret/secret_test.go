package secret_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/internal/secret"
	"github.com/prybar/prybar/internal/store"
)

func key(t *testing.T) []byte {
	t.Helper()
	k, err := secret.LoadOrCreateKey(filepath.Join(t.TempDir(), "prybar.key"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRoundTrip(t *testing.T) {
	k := key(t)
	for _, pw := range []string{"", "password", "ünïcødé ✓", strings.Repeat("x", 4096)} {
		s, err := secret.Seal(k, pw)
		if err != nil {
			t.Fatal(err)
		}
		if !secret.IsSealed(s) || (pw != "" && strings.Contains(s, pw)) {
			t.Fatalf("sealed %q = %q", pw, s)
		}
		got, err := secret.Open(k, s)
		if err != nil || got != pw {
			t.Fatalf("open: %q, %v; want %q", got, err, pw)
		}
	}
	a, _ := secret.Seal(k, "same")
	b, _ := secret.Seal(k, "same")
	if a == b {
		t.Fatal("two seals of one value are equal: nonce reused")
	}
}

func TestTamperAndWrongKey(t *testing.T) {
	k := key(t)
	s, _ := secret.Seal(k, "password")
	raw := []byte(s)
	// Flip a bit in the middle of the base64 payload (changing a character keeps it valid base64).
	i := len(secret.Prefix) + (len(raw)-len(secret.Prefix))/2
	if raw[i] == 'A' {
		raw[i] = 'B'
	} else {
		raw[i] = 'A'
	}
	if _, err := secret.Open(k, string(raw)); !errors.Is(err, secret.ErrDecrypt) {
		t.Fatalf("tampered: %v", err)
	}
	if _, err := secret.Open(k, s[:len(s)-4]); !errors.Is(err, secret.ErrDecrypt) {
		t.Fatalf("truncated: %v", err)
	}
	if _, err := secret.Open(key(t), s); !errors.Is(err, secret.ErrDecrypt) {
		t.Fatalf("wrong key: %v", err)
	}
	if _, err := secret.Open(nil, s); !errors.Is(err, secret.ErrNoKey) {
		t.Fatalf("no key: %v", err)
	}
	if _, err := secret.Open(k, "plain"); err == nil {
		t.Fatal("Open accepted an unsealed value")
	}
	if got, err := secret.OpenIfSealed(k, "plain"); err != nil || got != "plain" {
		t.Fatalf("OpenIfSealed(plain) = %q, %v", got, err)
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "prybar.key")
	k1, err := secret.LoadOrCreateKey(p)
	if err != nil || len(k1) != secret.KeySize {
		t.Fatalf("create: %d bytes, %v", len(k1), err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode().Perm(), err)
	}
	k2, err := secret.LoadOrCreateKey(p)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("reload gave a different key (%v)", err)
	}
	// Raw 32-byte keys are accepted too.
	raw := filepath.Join(dir, "raw.key")
	if err := os.WriteFile(raw, bytes.Repeat([]byte{7}, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	if k, err := secret.LoadOrCreateKey(raw); err != nil || k[0] != 7 {
		t.Fatalf("raw key: %v", err)
	}
	// A key file others can read is refused, as is a malformed one.
	if err := os.Chmod(raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := secret.LoadOrCreateKey(raw); err == nil {
		t.Fatal("world-readable key accepted")
	}
	bad := filepath.Join(dir, "bad.key")
	_ = os.WriteFile(bad, []byte("short"), 0o600)
	if _, err := secret.LoadOrCreateKey(bad); err == nil {
		t.Fatal("malformed key accepted")
	}
}

// Through the store: the database holds ciphertext (read with plain SQL), the plaintext appears
// in no database file, updates re-seal, sealed values are not sealed twice, and the event log
// does not carry the password either.
func TestHookSealsAtRest(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k := key(t)
	dbPath := filepath.Join(dir, "prybar.db")
	st, err := store.Open(ctx, dbPath, store.Options{SecretKey: k})
	if err != nil {
		t.Fatal(err)
	}
	const pw1, pw2 = "Plaintext-Canary-0xC0FFEE", "Second-Canary-0xBEEF"
	var bmcID int
	err = st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		m, err := tx.Machine.Create().SetName("sealed.example.com").Save(ctx)
		if err != nil {
			return err
		}
		b, err := tx.BMC.Create().SetMachineID(m.ID).SetProtocol("REDFISH").SetAddress("192.0.2.10").SetUsername("admin").SetPassword(pw1).Save(ctx)
		if err != nil {
			return err
		}
		bmcID = b.ID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rawPW := func() string {
		t.Helper()
		var s string
		if err := st.DB.QueryRowContext(ctx, "SELECT password FROM bmcs WHERE id = ?", bmcID).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	stored := rawPW()
	if !secret.IsSealed(stored) || strings.Contains(stored, pw1) {
		t.Fatalf("stored password %q is not sealed", stored)
	}
	if got, err := secret.Open(k, stored); err != nil || got != pw1 {
		t.Fatalf("open stored: %q, %v", got, err)
	}

	// Writing back the sealed value (a read-modify-write) does not seal it again.
	err = st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		b, err := tx.BMC.Get(ctx, bmcID)
		if err != nil {
			return err
		}
		return tx.BMC.UpdateOne(b).SetPassword(b.Password).SetAddress("192.0.2.11").Exec(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := rawPW(); got != stored {
		t.Fatalf("re-saving the sealed value changed it: %q -> %q", stored, got)
	}
	// A new plain password is sealed on update.
	err = st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		return tx.BMC.UpdateOneID(bmcID).SetPassword(pw2).Exec(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := secret.Open(k, rawPW()); err != nil || got != pw2 {
		t.Fatalf("after update: %q, %v", got, err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(dbPath + "*")
	if len(files) == 0 {
		t.Fatal("no database files")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, pw := range []string{pw1, pw2} {
			if bytes.Contains(b, []byte(pw)) {
				t.Errorf("plaintext password found in %s", filepath.Base(f))
			}
		}
	}
}

func TestInstallRejectsBadKey(t *testing.T) {
	if _, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "x.db"), store.Options{SecretKey: []byte("short")}); err == nil {
		t.Fatal("store opened with a 5-byte key")
	}
}

// A server started with another key than the one the database's passwords were sealed with
// refuses to start, naming the problem, instead of sealing passwords the others cannot open.
func TestStoreRefusesAnotherKey(t *testing.T) {
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "p.db")
	keyA, keyB := bytes.Repeat([]byte{1}, secret.KeySize), bytes.Repeat([]byte{2}, secret.KeySize)
	st, err := store.Open(ctx, db, store.Options{SecretKey: keyA})
	if err != nil {
		t.Fatal(err)
	}
	err = st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		m := tx.Machine.Create().SetName("k.test.example").SaveX(ctx)
		return tx.BMC.Create().SetMachineID(m.ID).SetProtocol("IPMI").SetAddress("127.0.0.1").SetPassword("pw").Exec(ctx)
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Open(ctx, db, store.Options{SecretKey: keyB}); err == nil || !strings.Contains(err.Error(), "same --secret-key-file") {
		t.Fatalf("open with another key: %v", err)
	}
	st, err = store.Open(ctx, db, store.Options{SecretKey: keyA})
	if err != nil {
		t.Fatalf("open with the right key: %v", err)
	}
	st.Close()
}
