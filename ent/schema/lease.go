package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// Lease is the DHCP state of one address of a network. There is one row per (network, address) for
// as long as the address has ever been leased: the row is reused when the address passes to another
// client, so the unique index makes "one address, two clients" impossible at the database level,
// whatever the server process does. History lives in the event log (lease.* events).
type Lease struct{ ent.Schema }

// Mixin of Lease.
func (Lease) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

// Fields of Lease.
func (Lease) Fields() []ent.Field {
	return []ent.Field{
		field.String("mac").Match(macPattern).Annotations(entgql.OrderField("MAC")),
		field.String("address").Validate(validAddr).Annotations(entgql.OrderField("ADDRESS")),
		field.Enum("state").Values("OFFERED", "BOUND", "RELEASED", "EXPIRED", "DECLINED").
			Annotations(entgql.OrderField("STATE")).
			Comment("DECLINED is a quarantine: the address is not offered again until expires_at"),
		field.Time("expires_at").Annotations(entgql.OrderField("EXPIRES_AT")),
		field.String("client_id").Optional().Comment("option 61, hex"),
		field.String("hostname").Optional().Comment("option 12"),
		field.String("trace").Optional().
			Comment("the boot trace id: set when a boot's first DHCP exchange starts, kept by that boot's later exchanges, carried in the iPXE script URL"),
		field.Int("network_id"),
		field.Int("machine_id").Optional().Nillable(),
	}
}

// Edges of Lease.
func (Lease) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("network", Network.Type).Ref("leases").Field("network_id").Unique().Required(),
		edge.From("machine", Machine.Type).Ref("leases").Field("machine_id").Unique(),
	}
}

// Indexes of Lease.
func (Lease) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("network_id", "address").Unique(),
		index.Fields("mac"),
		index.Fields("machine_id"),
	}
}

// Annotations of Lease. Leases are written by the DHCP server only: no GraphQL mutations.
func (Lease) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.RelayConnection(), entgql.QueryField()}
}
