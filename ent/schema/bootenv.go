package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/field"
)

// Bootenv is a boot environment: what a machine network-boots into (discovery, local disk, an OS
// installer). Bootenvs come from the catalogue (provision/ipxe: built-ins plus `prybar bootenvs
// load DIR`); the table is its loaded copy and the one source the boot HTTP server renders from.
// Its GraphQL type is hand-written (graph/boot.graphqls), hence entgql.Skip.
type Bootenv struct{ ent.Schema }

// Mixin of Bootenv.
func (Bootenv) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

// Fields of Bootenv.
func (Bootenv) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").NotEmpty().Unique().Match(namePattern),
		field.String("description").Optional(),
		field.String("kernel").Optional().Comment("asset path or URL"),
		field.Strings("initrd").Optional().Comment("asset paths or URLs"),
		field.String("cmdline").Optional().Comment("kernel command line (template)"),
		field.Text("script").Optional().Comment("iPXE script template; empty: generated from kernel/initrd/cmdline"),
		field.JSON("templates", map[string]string{}).Optional().Comment("name → template served at /boot/template/<name>"),
		field.Bool("builtin").Default(false),
		field.String("source").Optional().Comment("file:line it was loaded from"),
	}
}

// Annotations of Bootenv.
func (Bootenv) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.Skip(entgql.SkipAll)}
}
