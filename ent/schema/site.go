package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// Site is a data centre or a room: the root of the physical topology.
type Site struct{ ent.Schema }

// Mixin of Site.
func (Site) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

// Fields of Site.
func (Site) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").NotEmpty().Unique().MaxLen(128).Match(namePattern).
			Annotations(entgql.OrderField("NAME")),
		field.String("description").Optional(),
		field.String("location").Optional(),
	}
}

// Edges of Site.
func (Site) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("racks", Rack.Type).Annotations(entgql.RelayConnection()),
		edge.To("networks", Network.Type).Annotations(entgql.RelayConnection()),
	}
}

// Annotations of Site.
func (Site) Annotations() []schema.Annotation { return gqlAnnotations() }
