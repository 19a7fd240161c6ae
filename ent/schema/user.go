package schema

import (
	"time"

	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/prybar/prybar/internal/access"
)

// User is a person who signs in (internal/auth). Not an entgql type: the API exposes users
// through hand-written admin queries that never include the password hash.
type User struct{ ent.Schema }

// Mixin of User.
func (User) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

// Fields of User.
func (User) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").NotEmpty().MaxLen(64).Match(namePattern).Unique().Immutable(),
		// PBKDF2 hash with its parameters (internal/auth); empty: cannot sign in with a password.
		field.String("password_hash").Default("").Sensitive(),
		field.Enum("role").GoType(access.Role("")),
		// A disabled user cannot sign in, and their sessions and tokens stop working at once.
		field.Bool("disabled").Default(false),
	}
}

// Edges of User.
func (User) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("tokens", APIToken.Type),
		edge.To("sessions", Session.Type).Annotations(entsql.OnDelete(entsql.Cascade)),
	}
}

// Annotations of User.
func (User) Annotations() []schema.Annotation {
	return []schema.Annotation{entsql.Annotation{Table: "users"}, entgql.Skip(entgql.SkipAll)}
}

// APIToken is a bearer credential: shown once when created, stored as its SHA-256 (a random
// 256-bit secret needs no slow hash). Owned by a user, or standalone for automation. Machine-side
// tokens (agents, webhooks) share the store under another purpose and are never accepted as
// user tokens.
type APIToken struct{ ent.Schema }

// Fields of APIToken.
func (APIToken) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").NotEmpty().MaxLen(64).Match(namePattern).Unique().Immutable(),
		field.String("hash").NotEmpty().Unique().Immutable().Sensitive(),
		// The first characters of the token, to recognise it in a list without revealing it.
		field.String("prefix").Default("").Immutable(),
		field.Enum("purpose").Values("USER", "AGENT", "WEBHOOK").Default("USER").Immutable(),
		field.Enum("role").GoType(access.Role("")),
		field.Time("created_at").Default(time.Now).Immutable(),
		field.Time("expires_at").Optional().Nillable(),
		field.Time("last_used_at").Optional().Nillable(),
		field.Time("revoked_at").Optional().Nillable(),
		field.Int("user_id").Optional().Nillable(),
	}
}

// Edges of APIToken.
func (APIToken) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("user", User.Type).Ref("tokens").Field("user_id").Unique(),
	}
}

// Indexes of APIToken.
func (APIToken) Indexes() []ent.Index { return []ent.Index{index.Fields("user_id")} }

// Annotations of APIToken.
func (APIToken) Annotations() []schema.Annotation {
	return []schema.Annotation{entsql.Annotation{Table: "api_tokens"}, entgql.Skip(entgql.SkipAll)}
}

// Session is a signed-in browser: the cookie holds a random secret, the table its SHA-256.
type Session struct{ ent.Schema }

// Fields of Session.
func (Session) Fields() []ent.Field {
	return []ent.Field{
		field.String("hash").NotEmpty().Unique().Immutable().Sensitive(),
		field.Time("created_at").Default(time.Now).Immutable(),
		field.Time("expires_at"),
		field.Int("user_id"),
	}
}

// Edges of Session.
func (Session) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("user", User.Type).Ref("sessions").Field("user_id").Unique().Required(),
	}
}

// Annotations of Session.
func (Session) Annotations() []schema.Annotation {
	return []schema.Annotation{entsql.Annotation{Table: "sessions"}, entgql.Skip(entgql.SkipAll)}
}
