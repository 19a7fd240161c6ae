package schema

import (
	"regexp"

	"entgo.io/contrib/entgql"
	"entgo.io/ent/schema"
)

var (
	// namePattern is what a site, rack, network or role name may contain: safe in URLs, DNS and files.
	namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	// fqdnPattern accepts a fully qualified host name: at least two labels, RFC 1123 labels.
	fqdnPattern = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	// macPattern is the canonical MAC form stored: lower-case, colon separated (hooks normalise input).
	macPattern = regexp.MustCompile(`^([0-9a-f]{2}:){5}[0-9a-f]{2}$`)
)

// gqlAnnotations makes a type a Relay node with a connection query, where-filters, ordering and
// generated create/update inputs.
// query names the root query field; empty keeps entgql's default.
func gqlAnnotations(query ...string) []schema.Annotation {
	return []schema.Annotation{
		entgql.RelayConnection(),
		entgql.QueryField(query...),
		entgql.Mutations(entgql.MutationCreate(), entgql.MutationUpdate()),
	}
}
