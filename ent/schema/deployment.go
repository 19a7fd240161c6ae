package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// Deployment groups node-roles; deployments form a tree rooted at "system".
type Deployment struct{ ent.Schema }

// Mixin of Deployment.
func (Deployment) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

// Fields of Deployment.
func (Deployment) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").NotEmpty().Unique().Match(namePattern).Annotations(entgql.OrderField("NAME")),
		field.String("description").Optional(),
		field.Enum("state").Values("PROPOSED", "COMMITTED").Default("PROPOSED").
			Annotations(entgql.Skip(entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)),
		field.JSON("role_data", map[string]any{}).Optional().
			Comment("deployment-role data: role name -> attributes").
			Annotations(entgql.Type("Map"), entgql.Skip(entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)),
		field.Int("parent_id").Optional().Nillable(),
	}
}

// Edges of Deployment.
func (Deployment) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("children", Deployment.Type).From("parent").Field("parent_id").Unique(),
		edge.To("node_roles", NodeRole.Type).Annotations(entgql.RelayConnection(), entgql.Skip(entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)),
	}
}

// Annotations of Deployment.
func (Deployment) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.RelayConnection(), entgql.QueryField()}
}
