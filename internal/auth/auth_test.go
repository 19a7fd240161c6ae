package auth_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prybar/prybar/internal/access"
	"github.com/prybar/prybar/internal/auth"
	"github.com/prybar/prybar/internal/store"
)

func open(t *testing.T) *auth.Service {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return auth.New(st, nil)
}

func TestPasswordHash(t *testing.T) {
	old := auth.PasswordParams
	auth.PasswordParams = auth.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}
	defer func() { auth.PasswordParams = old }()
	h, err := auth.HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := auth.HashPassword("correct horse")
	if h == h2 {
		t.Error("two hashes of one password are equal: no salt")
	}
	if !auth.CheckPassword(h, "correct horse") || auth.CheckPassword(h, "correct horsE") || auth.CheckPassword("garbage", "x") {
		t.Error("CheckPassword")
	}
	// The work factor is stored: raising it keeps old hashes valid.
	auth.PasswordParams = auth.Argon2Params{Time: 2, MemoryKiB: 128, Threads: 1}
	if !auth.CheckPassword(h, "correct horse") {
		t.Error("an older work factor no longer verifies")
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Errorf("hash %q is not an argon2id PHC string with the configured parameters", h)
	}
	if auth.CheckPassword("$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$a2V5", "x") {
		t.Error("a hash asking for 4 GiB was evaluated")
	}
	if _, err := auth.HashPassword("short"); err == nil {
		t.Error("a short password was accepted")
	}
}

// Machine-side tokens share the store but are never user tokens, and user tokens are never
// machine tokens.
func TestMachineTokensAreNotUserTokens(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	agent, err := s.CreateMachineToken(ctx, auth.PurposeAgent, "agent-525400000001", &exp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AuthenticateToken(ctx, agent); err == nil {
		t.Error("an agent token authenticated as a user token")
	}
	if name, err := s.AuthenticateMachineToken(ctx, auth.PurposeAgent, agent); err != nil || name != "agent-525400000001" {
		t.Errorf("agent token: %q %v", name, err)
	}
	if _, err := s.AuthenticateMachineToken(ctx, auth.PurposeWebhook, agent); err == nil {
		t.Error("an agent token passed as a webhook secret")
	}
	user, _, err := s.CreateToken(ctx, auth.TokenOptions{Name: "u", Role: access.Viewer})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AuthenticateMachineToken(ctx, auth.PurposeAgent, user); err == nil {
		t.Error("a user token passed as an agent token")
	}
}

func TestLimiter(t *testing.T) {
	l := auth.NewLimiter(1, 3)
	for i := range 3 {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	ok, wait := l.Allow("a")
	if ok || wait <= 0 || wait > time.Second {
		t.Errorf("after the burst: %v %s", ok, wait)
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Error("another key was limited")
	}
	if ok, _ := auth.NewLimiter(0, 0).Allow("a"); !ok {
		t.Error("a disabled limiter refused")
	}
}
