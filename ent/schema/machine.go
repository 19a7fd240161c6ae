package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// Machine is a physical server ("node" in prose; the name avoids Relay's Node interface).
type Machine struct{ ent.Schema }

// Mixin of Machine.
func (Machine) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

// Fields of Machine.
func (Machine) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").NotEmpty().Unique().MaxLen(253).Match(fqdnPattern).
			Comment("fully qualified domain name").
			Annotations(entgql.OrderField("NAME")),
		field.Int("rack_id").Optional().Nillable(),
		field.Int("u_position").Optional().Nillable().Min(1).Comment("lowest rack unit occupied").
			Annotations(entgql.OrderField("U_POSITION")),
		field.Int("u_height").Default(1).Range(1, 60).Comment("rack units occupied"),
		field.String("serial").Optional(),
		field.String("vendor").Optional(),
		field.String("model").Optional(),
		field.String("arch").Default("x86_64"),
		field.String("uuid").Optional(),
		field.Int("cpu_count").Optional().NonNegative(),
		field.Int64("memory_bytes").Optional().NonNegative(),
		field.Bool("alive").Default(false).Comment("set by the system: the machine answered"),
		field.Bool("available").Default(true).Comment("operator switch: the scheduler may run work here"),
		field.String("bootenv").Default("discovery"),
		field.Enum("state").Values("NEW", "DISCOVERED", "READY", "BUSY", "ERROR").Default("NEW").
			Comment("lifecycle state derived from the machine's node-roles").
			Annotations(entgql.OrderField("STATE"), entgql.Skip(entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)),
		field.JSON("discovery", map[string]any{}).Optional().
			Comment("raw inventory reported by the agent or the BMC").
			Annotations(entgql.Type("Map"), entgql.Skip(entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)),
		field.JSON("drift", map[string]any{}).Optional().
			Comment("planned inventory against what the discovery agent found (empty: no drift); set by the system").
			Annotations(entgql.Type("Map"), entgql.Skip(entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)),
		field.String("discovery_conflict").Optional().
			Comment("set when an agent's report matched more than one machine: nothing was merged").
			Annotations(entgql.Skip(entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)),
	}
}

// Edges of Machine.
func (Machine) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("rack", Rack.Type).Ref("machines").Field("rack_id").Unique(),
		edge.To("nics", NIC.Type).Annotations(entgql.RelayConnection()),
		edge.To("disks", Disk.Type).Annotations(entgql.RelayConnection()),
		edge.To("bmc", BMC.Type).Unique(),
		edge.To("allocations", IPAllocation.Type).Annotations(entgql.RelayConnection()),
		edge.To("node_roles", NodeRole.Type).Annotations(entgql.RelayConnection(), entgql.Skip(entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)),
		edge.To("operations", Operation.Type).Annotations(entgql.RelayConnection(), entgql.Skip(entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)),
		edge.To("leases", Lease.Type).Annotations(entgql.RelayConnection(), entgql.Skip(entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)),
	}
}

// Indexes of Machine.
func (Machine) Indexes() []ent.Index {
	// serial and uuid: the discovery agent's registration matches machines by them.
	return []ent.Index{index.Fields("rack_id", "u_position"), index.Fields("serial"), index.Fields("uuid")}
}

// Annotations of Machine.
func (Machine) Annotations() []schema.Annotation { return gqlAnnotations() }
