//go:build ignore

// entc.go generates the ent client and the GraphQL schema of the inventory graph (graph/ent.graphqls).
// Run through `make generate`.
package main

import (
	"log"

	"entgo.io/contrib/entgql"
	"entgo.io/ent/entc"
	"entgo.io/ent/entc/gen"
	"github.com/vektah/gqlparser/v2/ast"
)

func main() {
	ex, err := entgql.NewExtension(
		entgql.WithConfigPath("gqlgen.yml"),
		entgql.WithSchemaGenerator(),
		entgql.WithSchemaPath("graph/ent.graphqls"),
		entgql.WithWhereInputs(true),
		entgql.WithNodeDescriptor(false),
		entgql.WithSchemaHook(viewerQueries),
	)
	if err != nil {
		log.Fatalf("entgql extension: %v", err)
	}
	err = entc.Generate("./ent/schema", &gen.Config{
		Target:  "./ent",
		Package: "github.com/prybar/prybar/ent",
		Features: []gen.Feature{
			gen.FeatureGlobalID,
			gen.FeatureExecQuery,
			gen.FeatureModifier,
			gen.FeatureLock,
		},
	}, entc.Extensions(ex))
	if err != nil {
		log.Fatalf("ent codegen: %v", err)
	}
}

// viewerQueries puts the access decision on the generated queries (node, nodes and the connection
// of every type): reading the inventory needs the VIEWER role (graph/auth.graphqls declares the
// directive). Secret fields are never generated, so no generated field needs more.
func viewerQueries(_ *gen.Graph, s *ast.Schema) error {
	q := s.Types["Query"]
	if q == nil {
		return nil
	}
	for _, f := range q.Fields {
		if f.Directives.ForName("hasRole") != nil {
			continue
		}
		f.Directives = append(f.Directives, &ast.Directive{
			Name:      "hasRole",
			Arguments: ast.ArgumentList{{Name: "role", Value: &ast.Value{Kind: ast.EnumValue, Raw: "VIEWER"}}},
		})
	}
	return nil
}
