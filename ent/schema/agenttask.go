package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// AgentTask is one piece of work for the discovery agent running on a machine: a script, its
// timeout, and once done its exit code and output. The result id the agent sends makes delivery
// idempotent: a result is applied once, however often it is sent.
type AgentTask struct{ ent.Schema }

// Mixin adds create/update times.
func (AgentTask) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

// Fields of AgentTask.
func (AgentTask) Fields() []ent.Field {
	return []ent.Field{
		// A plain column, not an edge: tasks are the agent protocol's bookkeeping, not part of the
		// GraphQL graph.
		field.Int("machine_id"),
		field.Int("node_role_id").Optional().Nillable().Comment("the node-role whose executor queued the task"),
		field.String("name").NotEmpty(),
		field.Enum("kind").Values("SCRIPT", "REBOOT", "POWEROFF", "KEXEC").Default("SCRIPT"),
		field.Text("script").Optional(),
		field.Int("timeout_seconds").Positive().Default(300),
		field.Enum("state").Values("QUEUED", "RUNNING", "DONE", "FAILED").Default("QUEUED"),
		field.Int("exit_code").Optional().Nillable(),
		field.Text("output").Optional(),
		field.String("error").Optional(),
		field.String("result_id").Optional().Comment("the agent's id for its result delivery (idempotency)"),
		field.String("boot").Optional().Comment("the boot (trace id) that ran the task"),
		field.Time("started_at").Optional().Nillable(),
		field.Time("finished_at").Optional().Nillable(),
	}
}

// Indexes of AgentTask.
func (AgentTask) Indexes() []ent.Index {
	return []ent.Index{index.Fields("machine_id", "state"), index.Fields("node_role_id")}
}

// Annotations keep AgentTask out of GraphQL.
func (AgentTask) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.Skip(entgql.SkipAll)}
}
