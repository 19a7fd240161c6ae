package schema

import (
	"time"

	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// Operation is an operator's ad-hoc action on one machine outside the role graph (power on/off/
// cycle, set the boot device). It is tracked like a run: its state changes are events, so clients
// follow progress and result on the subscription.
type Operation struct{ ent.Schema }

// Fields of Operation.
func (Operation) Fields() []ent.Field {
	return []ent.Field{
		field.String("action").Comment("power-on, power-off, power-soft, power-cycle, power-reset, boot-device").
			Annotations(entgql.OrderField("ACTION")),
		field.JSON("params", map[string]any{}).Optional().Annotations(entgql.Type("Map")),
		field.Enum("state").Values("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "ABANDONED").Default("PENDING").
			Annotations(entgql.OrderField("STATE")),
		field.String("message").Optional().Comment("progress or the reason for failure"),
		field.JSON("result", map[string]any{}).Optional().Annotations(entgql.Type("Map")),
		field.Text("log").Optional(),
		field.String("owner").Optional().Comment("server instance running it"),
		field.Int("owner_epoch").Optional().Nillable().
			Comment("PostgreSQL: the owning server instance's number, whose liveness lock it holds while it lives; an operation whose owner no longer holds it is settled by any server"),
		field.Time("created_at").Default(time.Now).Immutable().Annotations(entgql.OrderField("CREATED_AT")),
		field.Time("started_at").Optional().Nillable(),
		field.Time("finished_at").Optional().Nillable(),
		field.Int("machine_id"),
	}
}

// Edges of Operation.
func (Operation) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("machine", Machine.Type).Ref("operations").Field("machine_id").Unique().Required(),
	}
}

// Annotations of Operation.
func (Operation) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.RelayConnection(), entgql.QueryField()}
}
