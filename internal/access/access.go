// Package access holds who is asking and what they may do: the roles, the identity a request
// carries in its context, and the rule deciding whether an identity holds a role. It has no
// dependencies so the ent schema, the GraphQL layer and the HTTP layer can all share it;
// internal/auth resolves credentials (passwords, tokens, sessions) into an Identity.
package access

import (
	"context"
	"fmt"
	"io"
	"strconv"
)

// Role is a level of access; each includes the ones below it.
type Role string

// The roles, lowest first.
const (
	// Viewer reads everything except secrets and subscribes to the change feed.
	Viewer Role = "VIEWER"
	// Operator also writes the inventory, binds and commits, retries, powers and boots machines.
	Operator Role = "OPERATOR"
	// Admin also manages users, tokens, BMC credentials and the role and bootenv catalogues.
	Admin Role = "ADMIN"
)

// Values lists the roles (for the ent enum).
func (Role) Values() []string { return []string{string(Viewer), string(Operator), string(Admin)} }

func (r Role) rank() int {
	switch r {
	case Viewer:
		return 1
	case Operator:
		return 2
	case Admin:
		return 3
	}
	return 0
}

// Valid reports whether r is one of the roles.
func (r Role) Valid() bool { return r.rank() > 0 }

// Includes reports whether r grants at least need.
func (r Role) Includes(need Role) bool { return r.rank() > 0 && r.rank() >= need.rank() }

// ParseRole accepts a role name in any case.
func ParseRole(s string) (Role, error) {
	r := Role(upper(s))
	if !r.Valid() {
		return "", fmt.Errorf("unknown role %q (want viewer, operator or admin)", s)
	}
	return r, nil
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// MarshalGQL writes the role as a GraphQL enum value.
func (r Role) MarshalGQL(w io.Writer) { io.WriteString(w, strconv.Quote(string(r))) }

// UnmarshalGQL reads a GraphQL enum value.
func (r *Role) UnmarshalGQL(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("role must be a string")
	}
	p, err := ParseRole(s)
	if err != nil {
		return err
	}
	*r = p
	return nil
}

// Kinds of identity.
const (
	KindUser  = "user"
	KindToken = "token"
)

// Identity is who a request acts as.
type Identity struct {
	// Name is the user's or token's name.
	Name string
	// Kind is KindUser for a signed-in user or KindToken for an API token; a token acts as
	// itself (with its own role), so the audit log names the token, not its owner.
	Kind string
	Role Role
	// UserID is the signed-in user, or the owner of a token (0 for standalone tokens).
	UserID int
	// TokenID is the API token authenticating the request (0 for sessions).
	TokenID int
	// SessionID is the cookie session authenticating the request (0 for tokens).
	SessionID int
	// Revoked, when set, is closed once the credential behind the identity is revoked, expired or
	// disabled; long-lived connections (subscriptions) end on it.
	Revoked <-chan struct{}
}

// Actor is the identity as the audit log names it: "user:alice", "token:ci-deploy".
func (id *Identity) Actor() string { return id.Kind + ":" + id.Name }

type ctxKey struct{}

// With returns ctx carrying id.
func With(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// From returns the identity in ctx, or nil for an anonymous request.
func From(ctx context.Context) *Identity {
	id, _ := ctx.Value(ctxKey{}).(*Identity)
	return id
}
