package graph

import (
	"context"
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
)

var ast0, ast1 = ast.Field{Alias: "sites", Name: "sites"}, ast.Field{Alias: "racks", Name: "racks"}

// withFieldContext must be indistinguishable from graphql.WithFieldContext to gqlgen: the field
// context is found, its Parent is the enclosing one, paths are built through it, and other
// context values and cancellation still reach through.
func TestFieldCtx(t *testing.T) {
	type k struct{}
	base, cancel := context.WithCancel(context.WithValue(context.Background(), k{}, "v"))
	outer := &graphql.FieldContext{Object: "Query", Field: graphql.CollectedField{Field: &ast0}}
	ctx := graphql.WithFieldContext(base, outer)
	inner := &graphql.FieldContext{Object: "Machine", Field: graphql.CollectedField{Field: &ast1}}
	got := withFieldContext(ctx, inner)
	fc := graphql.GetFieldContext(got)
	if fc == nil || fc.Object != "Machine" || fc.Parent != outer {
		t.Fatalf("GetFieldContext = %+v, want a copy of inner whose parent is outer", fc)
	}
	if p := fc.Path().String(); p != "sites.racks" {
		t.Errorf("path %q, want sites.racks", p)
	}
	if got.Value(k{}) != "v" {
		t.Error("other values are lost")
	}
	// List elements: marshalSliceSerial gives each element an index under the list's field.
	arr := marshalSliceSerial(got, 3, 0, false, func(ctx context.Context, i int) graphql.Marshaler {
		if p := graphql.GetPath(ctx).String(); p != "sites.racks["+string(rune('0'+i))+"]" {
			t.Errorf("element %d: path %q", i, p)
		}
		return graphql.MarshalInt(i)
	})
	if len(arr) != 3 {
		t.Fatalf("%d elements", len(arr))
	}
	cancel()
	if got.Err() == nil {
		t.Error("cancellation does not reach through")
	}
}
