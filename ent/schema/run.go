package schema

import (
	"time"

	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// Run is one attempt to execute a node-role.
type Run struct{ ent.Schema }

// Fields of Run.
func (Run) Fields() []ent.Field {
	return []ent.Field{
		field.String("executor"),
		field.Int("attempt").Default(1),
		field.Enum("status").Values("RUNNING", "SUCCEEDED", "FAILED", "ABANDONED").Default("RUNNING").
			Annotations(entgql.OrderField("STATUS")),
		field.JSON("input", map[string]any{}).Optional().Annotations(entgql.Type("Map")),
		field.JSON("output", map[string]any{}).Optional().Annotations(entgql.Type("Map")),
		field.Text("log").Optional(),
		field.String("error").Optional(),
		field.Int("exit_status").Optional().Nillable(),
		field.Time("started_at").Default(time.Now).Annotations(entgql.OrderField("STARTED_AT")),
		field.Time("finished_at").Optional().Nillable(),
		field.String("owner").Optional().Comment("scheduler instance that claimed the run"),
		field.Int("leader_epoch").Optional().
			Comment("leader epoch under which the run was claimed (PostgreSQL: the scheduler lock's epoch; 0 on SQLite); a completion from an older epoch is refused"),
		field.Int("node_role_id"),
	}
}

// Edges of Run.
func (Run) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("node_role", NodeRole.Type).Ref("runs").Field("node_role_id").Unique().Required(),
	}
}

// Annotations of Run.
func (Run) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.RelayConnection(), entgql.QueryField()}
}
