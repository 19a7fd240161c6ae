package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// BMC is a machine's baseboard management controller: the out-of-band path to power and boot.
type BMC struct{ ent.Schema }

// Mixin of BMC.
func (BMC) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

// Fields of BMC.
func (BMC) Fields() []ent.Field {
	return []ent.Field{
		field.Enum("protocol").Values("REDFISH", "IPMI").Annotations(entgql.OrderField("PROTOCOL")),
		field.String("address").NotEmpty().Annotations(entgql.OrderField("ADDRESS")),
		field.Int("port").Optional().Range(0, 65535).Comment("0 means the protocol's default"),
		field.String("scheme").Default("https").Comment("redfish only: https, or http for simulators"),
		field.Bool("insecure").Default(false).Comment("skip TLS verification (redfish)"),
		field.String("username").Optional(),
		// Write-only: never returned by the API; encrypted at rest by internal/secret.
		field.String("password").Optional().Sensitive().
			Annotations(entgql.Skip(entgql.SkipType, entgql.SkipWhereInput, entgql.SkipOrderField)),
		// Which ComputerSystem of the BMC this machine is, by Redfish Id (e.g. "Blade2"): needed
		// when the BMC manages several (blade chassis, SmartNICs, composed systems); recorded by
		// discovery when the BMC has exactly one. Empty: the BMC's only system.
		field.String("system_id").Optional().MaxLen(255).
			Comment("redfish: the ComputerSystem Id this machine is, when the BMC manages several"),
		field.Int("machine_id").Unique(),
	}
}

// Edges of BMC.
func (BMC) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("machine", Machine.Type).Ref("bmc").Field("machine_id").Unique().Required(),
	}
}

// Annotations of BMC.
func (BMC) Annotations() []schema.Annotation {
	return append(gqlAnnotations("bmcs"), entsql.Annotation{Table: "bmcs"})
}
