package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// Disk is a block device of a machine.
type Disk struct{ ent.Schema }

// Mixin of Disk.
func (Disk) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

// Fields of Disk.
func (Disk) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").NotEmpty().Annotations(entgql.OrderField("NAME")),
		field.Int64("size_bytes").NonNegative().Default(0).Annotations(entgql.OrderField("SIZE_BYTES")),
		field.String("model").Optional(),
		field.String("serial").Optional(),
		field.Enum("kind").Values("HDD", "SSD", "NVME", "UNKNOWN").Default("UNKNOWN"),
		field.String("path").Optional().Comment("stable /dev/disk/by-id path"),
		field.Int("machine_id"),
	}
}

// Edges of Disk.
func (Disk) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("machine", Machine.Type).Ref("disks").Field("machine_id").Unique().Required(),
	}
}

// Annotations of Disk.
func (Disk) Annotations() []schema.Annotation { return gqlAnnotations() }

// Indexes of Disk: a machine's Disks are loaded by machine (SQLite does not index foreign keys).
func (Disk) Indexes() []ent.Index {
	return []ent.Index{index.Fields("machine_id")}
}
