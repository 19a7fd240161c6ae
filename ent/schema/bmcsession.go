package schema

import (
	"time"

	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// BMCSession is a Redfish session this server holds (or held when it died) on a BMC: the
// journal behind redfish.WithSessionJournal, read at start-up by redfish.LogoutStale so a crash
// does not leave sessions occupying the BMC's small session table. Internal: not in the API.
// The BMC is identified by address and port, not by an edge, so a record outlives a BMC record
// deleted meanwhile (the session on the BMC is still there).
type BMCSession struct{ ent.Schema }

// Fields of BMCSession.
func (BMCSession) Fields() []ent.Field {
	return []ent.Field{
		// The server that opened the session (its host name): replicas sharing a PostgreSQL
		// database each recover only their own sessions, never the live ones of another.
		field.String("owner").Default("").Immutable(),
		field.String("address").NotEmpty().Immutable(),
		field.Int("port").Default(0).Immutable(),
		field.String("scheme").Default("https").Immutable(),
		field.Bool("insecure").Default(false).Immutable(),
		field.String("username").Optional().Immutable(),
		field.String("uri").NotEmpty().Immutable().Comment("the session resource to DELETE"),
		// The X-Auth-Token, sealed with internal/secret (enc:v1:…); empty when the server has no
		// key, in which case logout uses the BMC record's credentials.
		field.String("token").Optional().Sensitive().Immutable(),
		field.Time("created_at").Default(time.Now).Immutable(),
	}
}

// Indexes of BMCSession.
func (BMCSession) Indexes() []ent.Index {
	return []ent.Index{index.Fields("address", "port", "uri").Unique(), index.Fields("owner")}
}

// Annotations of BMCSession.
func (BMCSession) Annotations() []schema.Annotation {
	return []schema.Annotation{entsql.Annotation{Table: "bmc_sessions"}, entgql.Skip(entgql.SkipAll)}
}
