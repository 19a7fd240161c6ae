package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// NIC is a network interface of a machine, identified by its MAC address.
type NIC struct{ ent.Schema }

// Mixin of NIC.
func (NIC) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

// Fields of NIC.
func (NIC) Fields() []ent.Field {
	return []ent.Field{
		field.String("mac").Unique().Match(macPattern).Comment("lower-case, colon separated").
			Annotations(entgql.OrderField("MAC")),
		field.String("name").Optional().Annotations(entgql.OrderField("NAME")),
		field.Int("speed_mbps").Optional().NonNegative(),
		// Nil when unknown: BMCs often do not report link state, and unknown is not down.
		field.Bool("link").Optional().Nillable().Comment("link up; null when no source reported it"),
		field.Bool("pxe").Default(false).Comment("the firmware can boot from this interface"),
		field.String("switch_name").Optional().Comment("from LLDP when known"),
		field.String("switch_port").Optional(),
		field.Int("machine_id"),
	}
}

// Edges of NIC.
func (NIC) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("machine", Machine.Type).Ref("nics").Field("machine_id").Unique().Required(),
	}
}

// Annotations of NIC.
func (NIC) Annotations() []schema.Annotation {
	return append(gqlAnnotations("nics"), entsql.Annotation{Table: "nics"})
}

// Indexes of NIC: a machine's NICs are loaded by machine (SQLite does not index foreign keys).
func (NIC) Indexes() []ent.Index {
	return []ent.Index{index.Fields("machine_id")}
}
