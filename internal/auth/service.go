package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/apitoken"
	"github.com/prybar/prybar/ent/session"
	"github.com/prybar/prybar/ent/user"
	"github.com/prybar/prybar/internal/access"
	"github.com/prybar/prybar/internal/domain"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/internal/store"
)

// SessionTTL is how long a sign-in lasts.
const SessionTTL = 12 * time.Hour

// lastUsedResolution bounds how often a token's last-used time is written: once per token per
// interval, not once per request.
const lastUsedResolution = 30 * time.Second

// ErrUnauthenticated is returned for a missing, unknown, expired or revoked credential. It never
// says which, so probing learns nothing.
var ErrUnauthenticated = errors.New("invalid or expired credentials")

// Service authenticates and manages users, API tokens and sessions.
type Service struct {
	st  *store.Store
	log *slog.Logger

	mu sync.Mutex
	// changed is closed (and replaced) whenever a credential is revoked, a user disabled, deleted
	// or demoted, or a session ended: watchers of long-lived connections re-check then.
	changed chan struct{}
}

// New returns the service over st.
func New(st *store.Store, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{st: st, log: log, changed: make(chan struct{})}
}

func (s *Service) notify() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

func (s *Service) changes() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// CreateUser adds a user. The password may be empty (the user then signs in only through tokens
// an admin creates for them).
func (s *Service) CreateUser(ctx context.Context, name, password string, role access.Role) (*ent.User, error) {
	if !role.Valid() {
		return nil, domain.Errorf("role", domain.Invalid, "unknown role %q", role)
	}
	hash := ""
	if password != "" {
		var err error
		if hash, err = HashPassword(password); err != nil {
			return nil, domain.Errorf("password", domain.Invalid, "%s", err.Error())
		}
	}
	var u *ent.User
	err := s.st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		if n, _ := tx.User.Query().Where(user.Name(name)).Count(ctx); n > 0 {
			return domain.Errorf("name", domain.Duplicate, "a user named %q exists", name)
		}
		var err error
		u, err = tx.User.Create().SetName(name).SetPasswordHash(hash).SetRole(role).Save(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return u.Unwrap(), nil
}

// UserUpdate changes a user; nil fields stay.
type UserUpdate struct {
	Role     *access.Role
	Disabled *bool
	Password *string
}

// UpdateUser changes a user's role, disabled flag or password. Disabling or demoting a user
// ends their sessions and tokens' power at once (every request re-reads the user).
func (s *Service) UpdateUser(ctx context.Context, id int, up UserUpdate) (*ent.User, error) {
	var u *ent.User
	err := s.st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		b := tx.User.UpdateOneID(id)
		if up.Role != nil {
			if !up.Role.Valid() {
				return domain.Errorf("role", domain.Invalid, "unknown role %q", *up.Role)
			}
			b.SetRole(*up.Role)
		}
		if up.Disabled != nil {
			b.SetDisabled(*up.Disabled)
		}
		if up.Password != nil {
			hash, err := HashPassword(*up.Password)
			if err != nil {
				return domain.Errorf("password", domain.Invalid, "%s", err.Error())
			}
			b.SetPasswordHash(hash)
			// A new password signs every browser out.
			if _, err := tx.Session.Delete().Where(session.UserID(id)).Exec(ctx); err != nil {
				return err
			}
		}
		var err error
		u, err = b.Save(ctx)
		if ent.IsNotFound(err) {
			return domain.Errorf("id", domain.NotFound, "no user %d", id)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	s.notify()
	return u.Unwrap(), nil
}

// DeleteUser removes a user with their sessions; their tokens are revoked (kept for the audit
// trail, unusable).
func (s *Service) DeleteUser(ctx context.Context, id int) error {
	err := s.st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		now := time.Now()
		if err := tx.APIToken.Update().Where(apitoken.UserID(id), apitoken.RevokedAtIsNil()).SetRevokedAt(now).Exec(ctx); err != nil {
			return err
		}
		if err := tx.APIToken.Update().Where(apitoken.UserID(id)).ClearUserID().Exec(ctx); err != nil {
			return err
		}
		if _, err := tx.Session.Delete().Where(session.UserID(id)).Exec(ctx); err != nil {
			return err
		}
		err := tx.User.DeleteOneID(id).Exec(ctx)
		if ent.IsNotFound(err) {
			return domain.Errorf("id", domain.NotFound, "no user %d", id)
		}
		return err
	})
	if err == nil {
		s.notify()
	}
	return err
}

// TokenOptions describe a new API token.
type TokenOptions struct {
	Name string
	Role access.Role
	// UserID owns the token (0: standalone, for automation). An owned token can never hold more
	// than its owner's role, and stops working when the owner is disabled or deleted.
	UserID int
	// ExpiresAt, when set, ends the token.
	ExpiresAt *time.Time
}

// CreateToken creates an API token and returns its secret: the only time it is ever available.
func (s *Service) CreateToken(ctx context.Context, o TokenOptions) (string, *ent.APIToken, error) {
	if !o.Role.Valid() {
		return "", nil, domain.Errorf("role", domain.Invalid, "unknown role %q", o.Role)
	}
	if o.ExpiresAt != nil && !o.ExpiresAt.After(time.Now()) {
		return "", nil, domain.Errorf("expiresAt", domain.Invalid, "expiry is in the past")
	}
	secret := newSecret(TokenPrefix)
	var t *ent.APIToken
	err := s.st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		if n, _ := tx.APIToken.Query().Where(apitoken.Name(o.Name)).Count(ctx); n > 0 {
			return domain.Errorf("name", domain.Duplicate, "a token named %q exists", o.Name)
		}
		b := tx.APIToken.Create().SetName(o.Name).SetRole(o.Role).SetHash(hashSecret(secret)).
			SetPrefix(secret[:len(TokenPrefix)+4]).SetNillableExpiresAt(o.ExpiresAt)
		if o.UserID != 0 {
			u, err := tx.User.Get(ctx, o.UserID)
			if ent.IsNotFound(err) {
				return domain.Errorf("userID", domain.NotFound, "no user %d", o.UserID)
			} else if err != nil {
				return err
			}
			if !u.Role.Includes(o.Role) {
				return domain.Errorf("role", domain.Invalid, "a token of %s cannot hold %s: more than the user's role %s", u.Name, o.Role, u.Role)
			}
			b.SetUserID(o.UserID)
		}
		var err error
		t, err = b.Save(ctx)
		return err
	})
	if err != nil {
		return "", nil, err
	}
	return secret, t.Unwrap(), nil
}

// RevokeToken ends a token; the next request with it is refused and subscriptions it opened end.
func (s *Service) RevokeToken(ctx context.Context, id int) (*ent.APIToken, error) {
	var t *ent.APIToken
	err := s.st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		cur, err := tx.APIToken.Query().Where(apitoken.ID(id), apitoken.PurposeEQ(apitoken.PurposeUSER)).Only(ctx)
		if ent.IsNotFound(err) {
			return domain.Errorf("id", domain.NotFound, "no API token %d", id)
		} else if err != nil {
			return err
		}
		if cur.RevokedAt != nil {
			t = cur
			return nil
		}
		t, err = cur.Update().SetRevokedAt(time.Now()).Save(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.notify()
	return t.Unwrap(), nil
}

// AuthenticateToken resolves a bearer token into its identity: a user-purpose token, not revoked
// or expired, whose owner (if any) is enabled. It stamps the last-used time.
func (s *Service) AuthenticateToken(ctx context.Context, secret string) (*access.Identity, error) {
	if len(secret) < len(TokenPrefix)+8 || len(secret) > 200 {
		return nil, ErrUnauthenticated
	}
	t, err := s.st.Client.APIToken.Query().
		Where(apitoken.Hash(hashSecret(secret)), apitoken.PurposeEQ(apitoken.PurposeUSER)).
		WithUser().Only(ctx)
	if ent.IsNotFound(err) {
		return nil, ErrUnauthenticated
	} else if err != nil {
		return nil, err
	}
	if err := tokenUsable(t); err != nil {
		return nil, err
	}
	now := time.Now()
	if t.LastUsedAt == nil || now.Sub(*t.LastUsedAt) > lastUsedResolution {
		// Bookkeeping, not an audited change; a failure must not fail the request.
		if err := s.st.Client.APIToken.UpdateOneID(t.ID).SetLastUsedAt(now).Exec(events.Untracked(ctx)); err != nil {
			s.log.Warn("cannot record token use", "token", t.Name, "err", err)
		}
	}
	id := &access.Identity{Name: t.Name, Kind: access.KindToken, Role: t.Role, TokenID: t.ID}
	if t.UserID != nil {
		id.UserID = *t.UserID
	}
	return id, nil
}

func tokenUsable(t *ent.APIToken) error {
	if t.RevokedAt != nil || (t.ExpiresAt != nil && !time.Now().Before(*t.ExpiresAt)) {
		return ErrUnauthenticated
	}
	if t.UserID != nil {
		u := t.Edges.User
		if u == nil || u.Disabled || !u.Role.Includes(t.Role) {
			return ErrUnauthenticated
		}
	}
	return nil
}

// Login checks a name and password and opens a session, returning the cookie secret. Both the
// success and the failure are audit events.
func (s *Service) Login(ctx context.Context, name, password string) (string, *access.Identity, error) {
	u, err := s.st.Client.User.Query().Where(user.Name(name)).Only(ctx)
	if err != nil && !ent.IsNotFound(err) {
		return "", nil, err
	}
	ok := false
	if u == nil {
		CheckPassword(dummyHash(), password)
	} else {
		ok = u.PasswordHash != "" && CheckPassword(u.PasswordHash, password) && !u.Disabled
	}
	if !ok {
		// The name tried is recorded only when it exists: a password typed into the name field
		// must not end up in the log.
		changes := map[string]any{}
		objID := 0
		if u != nil {
			changes["name"], objID = u.Name, u.ID
		}
		actx := events.WithActor(ctx, "anonymous")
		if err := s.st.Tx(actx, func(ctx context.Context, tx *ent.Tx) error {
			return events.Emit(ctx, "auth.signin_failed", "user", objID, nil, changes)
		}); err != nil {
			s.log.Warn("cannot record a failed sign-in", "err", err)
		}
		return "", nil, ErrUnauthenticated
	}
	secret := newSecret("")
	id := &access.Identity{Name: u.Name, Kind: access.KindUser, Role: u.Role, UserID: u.ID}
	err = s.st.Tx(events.WithActor(ctx, id.Actor()), func(ctx context.Context, tx *ent.Tx) error {
		sess, err := tx.Session.Create().SetHash(hashSecret(secret)).SetUserID(u.ID).SetExpiresAt(time.Now().Add(SessionTTL)).Save(ctx)
		if err != nil {
			return err
		}
		id.SessionID = sess.ID
		return events.Emit(ctx, "auth.signin", "user", u.ID, nil, map[string]any{"name": u.Name})
	})
	if err != nil {
		return "", nil, err
	}
	return secret, id, nil
}

// AuthenticateSession resolves a session cookie into the signed-in user.
func (s *Service) AuthenticateSession(ctx context.Context, secret string) (*access.Identity, error) {
	if secret == "" || len(secret) > 200 {
		return nil, ErrUnauthenticated
	}
	sess, err := s.st.Client.Session.Query().Where(session.Hash(hashSecret(secret))).WithUser().Only(ctx)
	if ent.IsNotFound(err) {
		return nil, ErrUnauthenticated
	} else if err != nil {
		return nil, err
	}
	u := sess.Edges.User
	if !time.Now().Before(sess.ExpiresAt) || u == nil || u.Disabled {
		return nil, ErrUnauthenticated
	}
	return &access.Identity{Name: u.Name, Kind: access.KindUser, Role: u.Role, UserID: u.ID, SessionID: sess.ID}, nil
}

// Logout ends the session with secret.
func (s *Service) Logout(ctx context.Context, secret string) error {
	_, err := s.st.Client.Session.Delete().Where(session.Hash(hashSecret(secret))).Exec(ctx)
	s.notify()
	return err
}

// Recheck reports whether id's credential is still valid, with the role it had.
func (s *Service) Recheck(ctx context.Context, id *access.Identity) error {
	var cur *access.Identity
	var err error
	switch {
	case id.TokenID != 0:
		var t *ent.APIToken
		t, err = s.st.Client.APIToken.Query().Where(apitoken.ID(id.TokenID)).WithUser().Only(ctx)
		if err == nil {
			if err = tokenUsable(t); err == nil {
				cur = &access.Identity{Role: t.Role}
			}
		}
	case id.SessionID != 0:
		var sess *ent.Session
		sess, err = s.st.Client.Session.Query().Where(session.ID(id.SessionID)).WithUser().Only(ctx)
		if err == nil {
			if u := sess.Edges.User; u == nil || u.Disabled || !time.Now().Before(sess.ExpiresAt) {
				err = ErrUnauthenticated
			} else {
				cur = &access.Identity{Role: u.Role}
			}
		}
	default:
		return nil // test identities without a stored credential
	}
	if ent.IsNotFound(err) {
		return ErrUnauthenticated
	}
	if err != nil {
		return err
	}
	if !cur.Role.Includes(id.Role) {
		return ErrUnauthenticated
	}
	return nil
}

// Watch calls revoked once id's credential stops being valid (revoked, expired, disabled,
// demoted, signed out), checking at every change made through this service and every interval
// (for changes made by another process: the CLI, another replica). It returns when ctx ends.
func (s *Service) Watch(ctx context.Context, id *access.Identity, interval time.Duration, revoked func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	// The change channel is taken before each check, never after: a revocation that lands while
	// this goroutine is starting or re-checking would otherwise wait for the next tick.
	changed := s.changes()
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-changed:
			case <-t.C:
			}
			changed = s.changes()
		}
		err := s.Recheck(ctx, id)
		if errors.Is(err, ErrUnauthenticated) {
			revoked()
			return
		} else if err != nil && ctx.Err() == nil {
			s.log.Warn("cannot re-check a connection's credential", "identity", id.Actor(), "err", err)
		}
	}
}

// EnsureDemoUsers creates the demo fixture's users (admin, operator, viewer) with password, when
// absent. For `serve --fixtures demo` only.
func (s *Service) EnsureDemoUsers(ctx context.Context, password string) error {
	for _, u := range []struct {
		name string
		role access.Role
	}{{"admin", access.Admin}, {"operator", access.Operator}, {"viewer", access.Viewer}} {
		n, err := s.st.Client.User.Query().Where(user.Name(u.name)).Count(ctx)
		if err != nil {
			return err
		}
		if n > 0 {
			continue
		}
		if _, err := s.CreateUser(events.WithActor(ctx, "fixtures"), u.name, password, u.role); err != nil {
			return fmt.Errorf("demo user %s: %w", u.name, err)
		}
	}
	return nil
}

// MachinePurpose is what a machine-side token is for.
type MachinePurpose = apitoken.Purpose

// Machine-side purposes.
const (
	PurposeAgent   MachinePurpose = apitoken.PurposeAGENT
	PurposeWebhook MachinePurpose = apitoken.PurposeWEBHOOK
)

// CreateMachineToken stores a machine-side secret (a discovery agent's per-boot token, a webhook
// secret) in the token store: hashed like user tokens, but never accepted by AuthenticateToken,
// so it cannot reach the API. name must be unique (a name: letters, digits, ".", "_", "-", e.g. "agent-525400000001-3").
func (s *Service) CreateMachineToken(ctx context.Context, purpose MachinePurpose, name string, expiresAt *time.Time) (string, error) {
	if purpose == apitoken.PurposeUSER {
		return "", errors.New("CreateMachineToken: use CreateToken for user tokens")
	}
	secret := newSecret("prym_")
	err := s.st.Tx(events.Untracked(ctx), func(ctx context.Context, tx *ent.Tx) error {
		return tx.APIToken.Create().SetName(name).SetPurpose(purpose).SetRole(access.Viewer).
			SetHash(hashSecret(secret)).SetPrefix(secret[:9]).SetNillableExpiresAt(expiresAt).Exec(ctx)
	})
	if err != nil {
		return "", err
	}
	return secret, nil
}

// AuthenticateMachineToken checks a machine-side secret of purpose and returns its name.
func (s *Service) AuthenticateMachineToken(ctx context.Context, purpose MachinePurpose, secret string) (string, error) {
	if purpose == apitoken.PurposeUSER || len(secret) > 200 {
		return "", ErrUnauthenticated
	}
	t, err := s.st.Client.APIToken.Query().Where(apitoken.Hash(hashSecret(secret)), apitoken.PurposeEQ(purpose)).Only(ctx)
	if ent.IsNotFound(err) {
		return "", ErrUnauthenticated
	} else if err != nil {
		return "", err
	}
	if t.RevokedAt != nil || (t.ExpiresAt != nil && !time.Now().Before(*t.ExpiresAt)) {
		return "", ErrUnauthenticated
	}
	return t.Name, nil
}
