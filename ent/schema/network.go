package schema

import (
	"fmt"
	"net/netip"

	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// Network is an IP network (admin, host, BMC …) that addresses are allocated from.
type Network struct{ ent.Schema }

// Mixin of Network.
func (Network) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

// Fields of Network.
func (Network) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").NotEmpty().Unique().Match(namePattern).Annotations(entgql.OrderField("NAME")),
		field.String("cidr").Validate(validCIDR).Comment("network prefix, e.g. 10.0.0.0/24"),
		field.String("router").Optional().Validate(validAddr),
		field.Int("vlan").Optional().Range(0, 4094),
		field.String("description").Optional(),
		field.Int("site_id").Optional().Nillable(),
		// DHCP options handed to clients on this network (provision/dhcp).
		field.Strings("dns_servers").Optional().Comment("DHCP option 6"),
		field.String("domain").Optional().Comment("DHCP option 15"),
		field.Int("lease_seconds").Optional().NonNegative().Comment("DHCP lease time; 0 means the server default"),
	}
}

// Edges of Network.
func (Network) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("site", Site.Type).Ref("networks").Field("site_id").Unique(),
		edge.To("ranges", IPRange.Type).Annotations(entgql.RelayConnection()),
		edge.To("allocations", IPAllocation.Type).Annotations(entgql.RelayConnection()),
		edge.To("leases", Lease.Type).Annotations(entgql.RelayConnection(), entgql.Skip(entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)),
	}
}

// Annotations of Network.
func (Network) Annotations() []schema.Annotation { return gqlAnnotations() }

// IPRange is a span of a network's addresses reserved for one purpose.
type IPRange struct{ ent.Schema }

// Mixin of IPRange.
func (IPRange) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

// Fields of IPRange.
func (IPRange) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").Optional(),
		field.String("first").Validate(validAddr),
		field.String("last").Validate(validAddr),
		field.Enum("purpose").Values("ADMIN", "HOST", "BMC", "DHCP").Annotations(entgql.OrderField("PURPOSE")),
		field.Int("network_id"),
	}
}

// Edges of IPRange.
func (IPRange) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("network", Network.Type).Ref("ranges").Field("network_id").Unique().Required(),
	}
}

// Annotations of IPRange.
func (IPRange) Annotations() []schema.Annotation { return gqlAnnotations() }

// IPAllocation binds one address of a network to a machine. An address is allocated at most once.
type IPAllocation struct{ ent.Schema }

// Mixin of IPAllocation.
func (IPAllocation) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

// Fields of IPAllocation.
func (IPAllocation) Fields() []ent.Field {
	return []ent.Field{
		field.String("address").Validate(validAddr).Annotations(entgql.OrderField("ADDRESS")),
		field.String("purpose").Optional(),
		field.Int("network_id"),
		field.Int("machine_id").Optional().Nillable(),
	}
}

// Edges of IPAllocation.
func (IPAllocation) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("network", Network.Type).Ref("allocations").Field("network_id").Unique().Required(),
		edge.From("machine", Machine.Type).Ref("allocations").Field("machine_id").Unique(),
	}
}

// Indexes of IPAllocation.
func (IPAllocation) Indexes() []ent.Index {
	return []ent.Index{index.Fields("network_id", "address").Unique()}
}

// Annotations of IPAllocation.
func (IPAllocation) Annotations() []schema.Annotation { return gqlAnnotations() }

func validCIDR(s string) error {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return fmt.Errorf("not a CIDR prefix: %q", s)
	}
	if p.Masked() != p {
		return fmt.Errorf("%q has host bits set (network is %s)", s, p.Masked())
	}
	return nil
}

func validAddr(s string) error {
	if _, err := netip.ParseAddr(s); err != nil {
		return fmt.Errorf("not an IP address: %q", s)
	}
	return nil
}
