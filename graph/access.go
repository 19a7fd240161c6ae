package graph

import (
	"context"
	"fmt"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/prybar/prybar/internal/access"
)

// Error codes of access decisions (extensions.code).
const (
	CodeUnauthenticated = "UNAUTHENTICATED"
	CodeForbidden       = "FORBIDDEN"
)

func errUnauthenticated(ctx context.Context) error {
	return &gqlerror.Error{Message: "authentication required: sign in or send Authorization: Bearer <token>",
		Path: graphql.GetPath(ctx), Extensions: map[string]any{"code": CodeUnauthenticated}}
}

func errForbidden(ctx context.Context, id *access.Identity, need access.Role) error {
	return &gqlerror.Error{Message: fmt.Sprintf("%s (%s) may not do this: it needs the %s role", id.Actor(), id.Role, need),
		Path: graphql.GetPath(ctx), Extensions: map[string]any{"code": CodeForbidden}}
}

// hasRole is the @hasRole directive: the field resolves only for an identity holding role.
func hasRole(ctx context.Context, _ any, next graphql.Resolver, role access.Role) (any, error) {
	id := access.From(ctx)
	if id == nil {
		return nil, errUnauthenticated(ctx)
	}
	if !id.Role.Includes(role) {
		return nil, errForbidden(ctx, id, role)
	}
	return next(ctx)
}

// denyUndecided refuses root fields that carry no @hasRole: a field added without an access
// decision is closed to everyone rather than open to all (TestRoleWalk also names it).
// Introspection (__schema, __type, __typename) needs an identity too, except __typename.
func denyUndecided(ctx context.Context, next graphql.RootResolver) graphql.Marshaler {
	fc := graphql.GetRootFieldContext(ctx)
	if fc == nil || fc.Field.Field == nil || fc.Field.Definition == nil {
		return next(ctx)
	}
	name := fc.Field.Name
	if name == "__typename" {
		return next(ctx)
	}
	if len(name) > 2 && name[:2] == "__" {
		if access.From(ctx) == nil {
			err := errUnauthenticated(ctx).(*gqlerror.Error)
			err.Path = ast.Path{ast.PathName(fc.Field.Alias)}
			graphql.AddError(ctx, err)
			return graphql.Null
		}
		return next(ctx)
	}
	if fc.Field.Definition.Directives.ForName("hasRole") == nil {
		graphql.AddError(ctx, &gqlerror.Error{Message: fmt.Sprintf("%s has no access decision (@hasRole) and is refused", name),
			Path: ast.Path{ast.PathName(fc.Field.Alias)}, Extensions: map[string]any{"code": CodeForbidden}})
		return graphql.Null
	}
	return next(ctx)
}
