package schema

import (
	"time"

	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// Event is one entry of the change feed (transactional outbox). seq is gapless and equals commit
// order: internal/events assigns it at the end of each transaction under a database-wide lock.
// Object ids are plain columns, not edges, so the log outlives what it describes.
type Event struct{ ent.Schema }

// Fields of Event.
func (Event) Fields() []ent.Field {
	return []ent.Field{
		field.Int64("seq").Unique().Immutable(),
		field.Time("time").Default(time.Now).Immutable(),
		field.String("actor").Default("system").Immutable(),
		field.String("kind").Immutable().Comment("e.g. machine.created, noderole.state"),
		field.String("object_type").Immutable(),
		field.Int("object_id").Immutable().Annotations(entgql.Type("ID")),
		field.Int("site_id").Optional().Nillable().Immutable().Annotations(entgql.Type("ID")),
		field.Int("rack_id").Optional().Nillable().Immutable().Annotations(entgql.Type("ID")),
		field.Int("machine_id").Optional().Nillable().Immutable().Annotations(entgql.Type("ID")),
		field.JSON("changes", map[string]any{}).Optional().Immutable().Annotations(entgql.Type("Map")),
	}
}

// Indexes of Event.
func (Event) Indexes() []ent.Index {
	return []ent.Index{index.Fields("kind"), index.Fields("machine_id")}
}

// Annotations of Event.
func (Event) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.Skip(entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)}
}
