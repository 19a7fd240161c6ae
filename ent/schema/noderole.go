package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// NodeRole is a role bound to a machine in a deployment: the unit the annealer schedules.
type NodeRole struct{ ent.Schema }

// Mixin of NodeRole.
func (NodeRole) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

// Fields of NodeRole.
func (NodeRole) Fields() []ent.Field {
	return []ent.Field{
		field.Enum("state").Values("PROPOSED", "TODO", "BLOCKED", "TRANSITION", "ACTIVE", "ERROR").
			Default("PROPOSED").Annotations(entgql.OrderField("STATE")),
		field.Int("cohort").Default(0).Comment("depth in the DAG: parents run first").
			Annotations(entgql.OrderField("COHORT")),
		field.Int("run_count").Default(0).Comment("successful runs"),
		field.Int("attempts").Default(0).Comment("failed attempts since the last success or manual retry"),
		field.Time("next_attempt_at").Optional().Nillable().Comment("automatic retry not before"),
		field.String("status").Optional().Comment("human-readable status of the last transition"),
		field.JSON("proposed_data", map[string]any{}).Optional().Annotations(entgql.Type("Map")),
		field.JSON("committed_data", map[string]any{}).Optional().Annotations(entgql.Type("Map")),
		field.JSON("system_data", map[string]any{}).Optional().Annotations(entgql.Type("Map")),
		field.JSON("wall", map[string]any{}).Optional().Comment("executor output").Annotations(entgql.Type("Map")),
		field.Int("machine_id"),
		field.Int("role_id"),
		field.Int("deployment_id"),
	}
}

// Edges of NodeRole.
func (NodeRole) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("machine", Machine.Type).Ref("node_roles").Field("machine_id").Unique().Required(),
		edge.From("role", Role.Type).Ref("node_roles").Field("role_id").Unique().Required(),
		edge.From("deployment", Deployment.Type).Ref("node_roles").Field("deployment_id").Unique().Required(),
		edge.To("children", NodeRole.Type).From("parents").Annotations(entgql.RelayConnection()),
		edge.To("runs", Run.Type).Annotations(entgql.RelayConnection()),
	}
}

// Indexes of NodeRole.
func (NodeRole) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("machine_id", "role_id", "deployment_id").Unique(),
		index.Fields("state", "cohort"),
	}
}

// Annotations of NodeRole.
func (NodeRole) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.RelayConnection(), entgql.QueryField()}
}
