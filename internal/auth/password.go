// Package auth turns credentials into identities: users with PBKDF2-hashed passwords, API tokens
// and cookie sessions stored as SHA-256 hashes, the HTTP endpoints that sign in and out, the
// middleware that authenticates /graphql (Bearer token or session cookie with CSRF), and the
// per-identity rate limiter. What an identity may do is internal/access and the GraphQL
// @hasRole directive.
package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// PasswordIterations is the PBKDF2-HMAC-SHA256 work factor of new hashes (OWASP's 2023
// recommendation). The count is stored in each hash, so raising it later keeps old hashes valid.
// golang.org/x/crypto (argon2id, bcrypt) is not available to this build; crypto/pbkdf2 is the
// standard library's FIPS-approved password KDF.
var PasswordIterations = 600_000

// MinPasswordLength is the shortest password accepted.
const MinPasswordLength = 8

const hashScheme = "pbkdf2-sha256"

// HashPassword returns "pbkdf2-sha256$ITER$SALT$KEY" (base64, unpadded).
func HashPassword(password string) (string, error) {
	if len(password) < MinPasswordLength {
		return "", fmt.Errorf("password is shorter than %d characters", MinPasswordLength)
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key, err := pbkdf2.Key(sha256.New, password, salt, PasswordIterations, 32)
	if err != nil {
		return "", err
	}
	enc := base64.RawStdEncoding
	return fmt.Sprintf("%s$%d$%s$%s", hashScheme, PasswordIterations, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
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
	if len(parts) != 4 || parts[0] != hashScheme {
		return false, errBadHash
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < 1 || iter > 10_000_000 {
		return false, errBadHash
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[2])
	want, err2 := enc.DecodeString(parts[3])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false, errBadHash
	}
	got, err := pbkdf2.Key(sha256.New, password, salt, iter, len(want))
	if err != nil {
		return false, err
	}
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
