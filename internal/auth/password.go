// Package auth turns credentials into identities: users with argon2id-hashed passwords, API tokens
// and cookie sessions stored as SHA-256 hashes, the HTTP endpoints that sign in and out, the
// middleware that authenticates /graphql (Bearer token or session cookie with CSRF), and the
// per-identity rate limiter. What an identity may do is internal/access and the GraphQL
// @hasRole directive.
package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
)

// Argon2Params is the argon2id work factor: time (passes), memory in KiB and lanes.
type Argon2Params struct {
	Time      uint32
	MemoryKiB uint32
	Threads   uint8
}

// PasswordParams is the work factor of new hashes: OWASP's argon2id minimum (19 MiB, 2 passes,
// 1 lane), chosen over a larger memory cost because sign-ins are rate limited per client, not
// globally, and each concurrent sign-in holds this much memory. The parameters are stored in
// each hash (PHC string format), so raising them later keeps old hashes valid.
var PasswordParams = Argon2Params{Time: 2, MemoryKiB: 19 * 1024, Threads: 1}

// MinPasswordLength is the shortest password accepted.
const MinPasswordLength = 8

// HashPassword returns the PHC string "$argon2id$v=19$m=M,t=T,p=P$SALT$KEY" (base64, unpadded),
// the format other argon2 tools read.
func HashPassword(password string) (string, error) {
	if len(password) < MinPasswordLength {
		return "", fmt.Errorf("password is shorter than %d characters", MinPasswordLength)
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	p := PasswordParams
	key := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, 32)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Time, p.Threads,
		enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// dummyHash is checked against when the user does not exist, so a wrong name takes as long as a
// wrong password and sign-in timing does not reveal which names exist.
var dummyHash = sync.OnceValue(func() string {
	h, _ := HashPassword("not-a-real-password")
	return h
})

var errBadHash = errors.New("malformed password hash")

// CheckPassword reports whether password matches hash (in constant time for the comparison).
func CheckPassword(hash, password string) bool {
	ok, err := checkPassword(hash, password)
	return ok && err == nil
}

func checkPassword(hash, password string) (bool, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return false, errBadHash
	}
	var m, t uint32
	var p uint8
	if n, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); n != 3 || err != nil {
		return false, errBadHash
	}
	// Bounds keep a tampered hash from turning a sign-in into a memory or CPU bomb.
	if m < 8 || m > 1<<21 || t < 1 || t > 64 || p < 1 || p > 16 {
		return false, errBadHash
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[4])
	want, err2 := enc.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 || len(want) > 128 {
		return false, errBadHash
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// TokenPrefix starts every API token, so a leaked one is recognisable (secret scanners, logs).
const TokenPrefix = "pry_"

// newSecret returns a random 256-bit secret with prefix, URL-safe.
func newSecret(prefix string) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// hashSecret is what the database stores of a token or session secret.
func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// CSRFToken is the anti-CSRF token of a session: derived from the session secret (which only the
// cookie holds), so it needs no storage and a page on another origin cannot compute it.
func CSRFToken(sessionSecret string) string {
	m := hmac.New(sha256.New, []byte(sessionSecret))
	m.Write([]byte("prybar csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func checkCSRF(sessionSecret, got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(CSRFToken(sessionSecret)), []byte(got)) == 1
}
