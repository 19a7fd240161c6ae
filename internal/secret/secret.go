// Package secret seals credentials at rest: BMC passwords are encrypted with AES-256-GCM under a
// key kept in a file next to the database (or wherever the operator points --secret-key-file), so
// a copied database file or backup does not hand out the management network.
//
// A sealed value is "enc:v1:" followed by base64(nonce ‖ ciphertext ‖ tag). The prefix lets the
// hook tell sealed from plain values (so a value is never encrypted twice, e.g. when a record read
// from the database is written back), and the version leaves room to rotate the scheme.
//
// The BMC's id is not bound as additional data on purpose: it is not known when a row is created
// (ent assigns it on insert), and moving a sealed password between rows is no more useful to an
// attacker than the database write access it already requires.
package secret

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/bmc"
	"github.com/prybar/prybar/ent/hook"
)

// Prefix marks a sealed value.
const Prefix = "enc:v1:"

// KeySize is the key length in bytes (AES-256).
const KeySize = 32

var (
	// ErrDecrypt means a sealed value does not open with the key: wrong key, or tampered data.
	ErrDecrypt = errors.New("secret: cannot decrypt (wrong key or tampered value)")
	// ErrNoKey means a sealed value was met but no key is configured.
	ErrNoKey = errors.New("secret: value is encrypted but no secret key is configured")
)

// IsSealed reports whether s is a sealed value.
func IsSealed(s string) bool { return strings.HasPrefix(s, Prefix) }

func aead(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secret: key must be %d bytes, got %d", KeySize, len(key))
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

// Seal encrypts plain. Each call uses a fresh random nonce, so sealing the same value twice gives
// different results (equal passwords are not recognisable in the database).
func Seal(key []byte, plain string) (string, error) {
	g, err := aead(key)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := g.Seal(nonce, nonce, []byte(plain), []byte(Prefix))
	return Prefix + base64.StdEncoding.EncodeToString(out), nil
}

// Open decrypts a sealed value. A value without the prefix is an error: callers that accept
// legacy plain values use OpenIfSealed.
func Open(key []byte, stored string) (string, error) {
	if !IsSealed(stored) {
		return "", errors.New("secret: value is not sealed (no enc:v1: prefix)")
	}
	if len(key) == 0 {
		return "", ErrNoKey
	}
	g, err := aead(key)
	if err != nil {
		return "", err
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(stored, Prefix))
	if err != nil || len(raw) < g.NonceSize()+g.Overhead() {
		return "", ErrDecrypt
	}
	plain, err := g.Open(nil, raw[:g.NonceSize()], raw[g.NonceSize():], []byte(Prefix))
	if err != nil {
		return "", ErrDecrypt
	}
	return string(plain), nil
}

// OpenIfSealed opens sealed values and returns other values unchanged (rows written before
// encryption was configured, or test inputs that were never stored).
func OpenIfSealed(key []byte, stored string) (string, error) {
	if !IsSealed(stored) {
		return stored, nil
	}
	return Open(key, stored)
}

// LoadOrCreateKey reads the key at path, or creates it (32 random bytes, written hex-encoded
// with mode 0600, in a directory created 0700) when the file does not exist. The file may hold
// the key hex-encoded (64 hex digits, surrounding whitespace ignored) or as 32 raw bytes. A key
// file readable by group or others is refused: it would defeat the encryption.
func LoadOrCreateKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return createKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("secret: read key file: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("secret: key file %s is accessible by others (mode %v); chmod 600 it", path, fi.Mode().Perm())
	}
	return parseKey(b)
}

func parseKey(b []byte) ([]byte, error) {
	if s := strings.TrimSpace(string(b)); len(s) == 2*KeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	if len(b) == KeySize {
		return b, nil
	}
	return nil, fmt.Errorf("secret: key file must hold %d bytes, raw or as %d hex digits", KeySize, 2*KeySize)
}

func createKey(path string) ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("secret: create key directory: %w", err)
		}
	}
	// O_EXCL: if two processes start at once, one creates and the other reads the winner's key
	// instead of silently overwriting it (which would make the first one's ciphertexts unreadable).
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		b, rerr := os.ReadFile(path)
		if rerr != nil {
			return nil, rerr
		}
		return parseKey(b)
	}
	if err != nil {
		return nil, fmt.Errorf("secret: create key file: %w", err)
	}
	if _, err := f.WriteString(hex.EncodeToString(key) + "\n"); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("secret: write key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return key, nil
}

// Hook seals the BMC password on every create and update that sets it. Values already sealed
// are left alone, so writing back a record read from the database never double-encrypts; an
// empty password stays empty (no credential, not an encrypted empty string).
func Hook(key []byte) ent.Hook {
	k := append([]byte(nil), key...)
	return func(next ent.Mutator) ent.Mutator {
		return hook.BMCFunc(func(ctx context.Context, m *ent.BMCMutation) (ent.Value, error) {
			if pw, ok := m.Password(); ok && pw != "" && !IsSealed(pw) {
				sealed, err := Seal(k, pw)
				if err != nil {
					return nil, err
				}
				m.SetPassword(sealed)
			}
			return next.Mutate(ctx, m)
		})
	}
}

// Install registers Hook on the client's BMC mutations.
func Install(client *ent.Client, key []byte) error {
	if _, err := aead(key); err != nil {
		return err
	}
	client.BMC.Use(Hook(key))
	return nil
}

// CheckKey verifies that key opens the BMC passwords already sealed in the database. Replicas
// started with different keys (for instance each generating its own prybar.key) would otherwise
// seal passwords the others cannot open; refusing to start says so at once.
func CheckKey(ctx context.Context, client *ent.Client, key []byte) error {
	b, err := client.BMC.Query().Where(bmc.PasswordHasPrefix(Prefix)).First(ctx)
	if ent.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := Open(key, b.Password); err != nil {
		return fmt.Errorf("secret: this key does not open the BMC passwords already in the database (sealed with another key): use the same --secret-key-file on every server")
	}
	return nil
}
