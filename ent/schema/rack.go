package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// Rack holds machines at U positions; U1 is the bottom slot.
type Rack struct{ ent.Schema }

// Mixin of Rack.
func (Rack) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

// Fields of Rack.
func (Rack) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").NotEmpty().MaxLen(128).Match(namePattern).
			Annotations(entgql.OrderField("NAME")),
		field.Int("height").Default(42).Range(1, 60).Comment("height in rack units").
			Annotations(entgql.OrderField("HEIGHT")),
		field.String("row").Optional(),
		field.Int("position").Optional().Comment("position within the row").
			Annotations(entgql.OrderField("POSITION")),
		field.Int("site_id"),
	}
}

// Edges of Rack.
func (Rack) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("site", Site.Type).Ref("racks").Field("site_id").Unique().Required(),
		edge.To("machines", Machine.Type).Annotations(entgql.RelayConnection()),
	}
}

// Indexes of Rack.
func (Rack) Indexes() []ent.Index {
	return []ent.Index{index.Fields("site_id", "name").Unique()}
}

// Annotations of Rack.
func (Rack) Annotations() []schema.Annotation { return gqlAnnotations() }
