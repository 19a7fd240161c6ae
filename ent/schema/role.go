package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// Role is a unit of work an executor performs on a machine (OpenCrowbar's barclamp role).
// Roles come from the catalogue (scheduler/catalog); the table is its loaded copy.
type Role struct{ ent.Schema }

// Mixin of Role.
func (Role) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

// Fields of Role.
func (Role) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").NotEmpty().Unique().Match(namePattern).Annotations(entgql.OrderField("NAME")),
		field.String("description").Optional(),
		field.String("executor").NotEmpty(),
		field.Strings("requires").Optional(),
		field.Strings("provides").Optional(),
		field.Strings("conflicts").Optional(),
		field.Strings("wants").Optional().Comment("attribute paths injected from parents"),
		field.Bool("implicit").Default(false),
		field.Bool("cluster").Default(false),
		field.Bool("destructive").Default(false),
		field.Bool("discovery").Default(false),
		field.JSON("schema", map[string]any{}).Optional().Annotations(entgql.Type("Map")),
		field.JSON("defaults", map[string]any{}).Optional().Annotations(entgql.Type("Map")),
		field.Int("retry_attempts").Default(0).NonNegative(),
		field.Int64("retry_backoff_ms").Default(1000).NonNegative(),
		field.Int64("retry_max_backoff_ms").Default(300000).NonNegative().Comment("cap of the exponential backoff"),
		field.Int64("timeout_ms").Default(0).NonNegative().Comment("0: the executor's default"),
		field.Int("depth").Default(0).Comment("longest requirement chain below this role"),
	}
}

// Edges of Role.
func (Role) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("node_roles", NodeRole.Type).Annotations(entgql.RelayConnection(), entgql.Skip(entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)),
	}
}

// Annotations of Role.
func (Role) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.RelayConnection(), entgql.QueryField()}
}
