package graph

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql"
)

// TestMarshalSliceSerial: every element is marshalled in order with its own index in the field
// context, and a panicking element is reported as an error and becomes null without stopping the
// others — what graphql.MarshalSliceConcurrently does, minus the goroutines.
func TestMarshalSliceSerial(t *testing.T) {
	quiet := func(_ context.Context, err any) error { return fmt.Errorf("panic: %v", err) }
	ctx := graphql.WithResponseContext(context.Background(), graphql.DefaultErrorPresenter, quiet)
	var seen []int
	ret := marshalSliceSerial(ctx, 4, 0, false, func(ctx context.Context, i int) graphql.Marshaler {
		fc := graphql.GetFieldContext(ctx)
		if fc == nil || fc.Index == nil || *fc.Index != i {
			t.Errorf("element %d: field context index %v", i, fc)
		}
		seen = append(seen, i)
		if i == 2 {
			panic("boom")
		}
		return graphql.MarshalInt(i)
	})
	if len(seen) != 4 || seen[0] != 0 || seen[3] != 3 {
		t.Fatalf("marshalled %v, want 0..3 in order", seen)
	}
	var buf bytes.Buffer
	ret.MarshalGQL(&buf)
	if got := buf.String(); got != "[0,1,null,3]" {
		t.Fatalf("got %s, want [0,1,null,3]", got)
	}
	if errs := graphql.GetErrors(ctx); len(errs) != 1 {
		t.Fatalf("errors %v, want the one panic", errs)
	}
}

// TestGeneratedExecutorIsSerial: graph/generated.go is what `make generate`
// (internal/gqlgenerate) produces — no goroutine per list element, no concurrent (goroutine per
// field) resolution below the root, no per-object DeferredGroup path — and not plain
// `gqlgen generate` output, which made the 10,000-machine topology query several times slower
// (docs/benchmarks.md).
func TestGeneratedExecutorIsSerial(t *testing.T) {
	src, err := os.ReadFile("generated.go")
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	for _, bad := range []string{"graphql.MarshalSliceConcurrently(", "out.ResolveConcurrently(", "graphql.NewDeferredGroup("} {
		if n := strings.Count(s, bad); n > 0 {
			t.Errorf("generated.go has %d calls of %s: regenerate with `make generate`", n, bad)
		}
	}
	if !strings.Contains(s, "marshalSliceSerial(") {
		t.Error("generated.go does not use marshalSliceSerial: regenerate with `make generate`")
	}
}
