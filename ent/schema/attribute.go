package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/field"
)

// Attribute declares a typed key that roles read and write; values live in the layered data of
// deployments and node-roles, this record gives the key its schema and default.
type Attribute struct{ ent.Schema }

// Fields of Attribute.
func (Attribute) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").NotEmpty().Unique().Annotations(entgql.OrderField("NAME")),
		field.String("description").Optional(),
		field.String("role").Optional().Comment("role that declares it, if any"),
		field.JSON("schema", map[string]any{}).Optional().Annotations(entgql.Type("Map")),
		field.JSON("default", map[string]any{}).Optional().Comment(`{"value": …}`).Annotations(entgql.Type("Map")),
		field.Bool("writable").Default(true),
		field.Enum("layer").Values("ROLE", "DEPLOYMENT", "NODEROLE", "SYSTEM", "WALL").Default("NODEROLE"),
	}
}

// Annotations of Attribute.
func (Attribute) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.RelayConnection(), entgql.QueryField()}
}
