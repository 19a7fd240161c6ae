package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/prybar/prybar/fixtures"
	"github.com/prybar/prybar/internal/access"
	"github.com/prybar/prybar/internal/store"
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
	for _, want := range []string{"marshalSliceSerial(", "newSerialFieldSet(fields)", "if ec.plainFields() {"} {
		if !strings.Contains(s, want) {
			t.Errorf("generated.go has no %s: regenerate with `make generate`", want)
		}
	}
}

// TestSerialFieldSetMarshalsLikeFieldSet: the same fields and values give the same JSON as
// graphql.FieldSet, including an alias given twice (written once) and more fields than fit
// inline.
func TestSerialFieldSetMarshalsLikeFieldSet(t *testing.T) {
	var fields []graphql.CollectedField
	for i, alias := range []string{"id", "name", "name", "__typename", "a1", "a2", "a3", "a4", "a5", "a6"} {
		fields = append(fields, graphql.CollectedField{Field: &ast.Field{Alias: alias, Name: fmt.Sprint("f", i)}})
	}
	for _, n := range []int{0, 1, 3, len(fields)} {
		want, got := graphql.NewFieldSet(fields[:n]), newSerialFieldSet(fields[:n])
		for i := range n {
			want.Values[i] = graphql.MarshalString(fmt.Sprint("v", i))
			got.Values[i] = graphql.MarshalString(fmt.Sprint("v", i))
		}
		var wb, gb bytes.Buffer
		want.MarshalGQL(&wb)
		got.MarshalGQL(&gb)
		if wb.String() != gb.String() {
			t.Errorf("%d fields: serialFieldSet wrote %s, graphql.FieldSet %s", n, gb.String(), wb.String())
		}
	}
}

// TestPlainFieldsMatchResolveField: a query answered with the plain-field shortcut is byte for byte
// the answer of the full graphql.ResolveField path; and with field middleware installed (so the
// shortcut is off, as NewHandler's contract requires) the middleware sees every leaf field.
func TestPlainFieldsMatchResolveField(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "plain.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f := fixtures.Generate(fixtures.GenerateOptions{Machines: 6, Racks: 2, Seed: 7})
	if _, err := fixtures.Load(ctx, st, "generated", f); err != nil {
		t.Fatal(err)
	}
	const query = `{ sites { totalCount edges { cursor node { __typename id name n2: name description
	  racks { totalCount edges { node { id name height
	    machines(first: 4) { totalCount pageInfo { hasNextPage endCursor } edges { node { id name uPosition uHeight serial rackID alive available
	      nics { totalCount edges { node { mac } } }
	      disks { totalCount edges { node { name sizeBytes } } }
	      bmc { protocol address } } } } } } } } } } }`
	answer := func(plain bool) (string, map[string]int) {
		res := NewResolver(st, nil, Options{})
		res.plainFields = plain
		srv := handler.New(NewExecutableSchema(Config{Resolvers: res, Directives: DirectiveRoot{HasRole: hasRole}}))
		srv.AddTransport(transport.POST{})
		seen := map[string]int{}
		var mu sync.Mutex // root fields resolve concurrently
		if !plain {
			srv.AroundFields(func(ctx context.Context, next graphql.Resolver) (any, error) {
				fc := graphql.GetFieldContext(ctx)
				mu.Lock()
				seen[fc.Object+"."+fc.Field.Name]++
				mu.Unlock()
				return next(ctx)
			})
		}
		body, _ := json.Marshal(map[string]any{"query": query})
		req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req = req.WithContext(access.With(req.Context(), testAdmin))
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		return rec.Body.String(), seen
	}
	fast, _ := answer(true)
	full, seen := answer(false)
	if fast != full {
		t.Fatalf("plain fields changed the answer:\nfast %s\nfull %s", fast, full)
	}
	if !strings.Contains(full, `"uPosition"`) || strings.Contains(full, `"errors"`) {
		t.Fatalf("unexpected answer %s", full)
	}
	for _, leaf := range []string{"Machine.name", "Machine.uPosition", "NIC.mac", "Disk.sizeBytes", "Site.name"} {
		if seen[leaf] == 0 {
			t.Errorf("field middleware never saw %s (saw %v)", leaf, seen)
		}
	}
	if n := strings.Count(full, `"uHeight"`); n == 0 || seen["Machine.name"] != n {
		t.Errorf("field middleware saw Machine.name %d times for %d machines", seen["Machine.name"], n)
	}
}

// TestLargeAnswerWrittenWhole: an answer whose data bypasses json.Marshal (graph/rawdata.go) is
// the same JSON document, with the same status and content type, as gqlgen's own transport
// writes; an answer too small to bypass is unchanged byte for byte.
func TestLargeAnswerWrittenWhole(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "large.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f := fixtures.Generate(fixtures.GenerateOptions{Machines: 400, Racks: 2, Seed: 7})
	if _, err := fixtures.Load(ctx, st, "generated", f); err != nil {
		t.Fatal(err)
	}
	post := func(h http.Handler, query string) *httptest.ResponseRecorder {
		body, _ := json.Marshal(map[string]any{"query": query})
		req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req = req.WithContext(access.With(req.Context(), testAdmin))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	plain := handler.New(NewExecutableSchema(Config{Resolvers: NewResolver(st, nil, Options{}), Directives: DirectiveRoot{HasRole: hasRole}}))
	plain.AddTransport(transport.POST{})
	ours := NewHandler(st, nil, Options{})
	const large = `{ machines(first: 400) { edges { node { id name serial nics { edges { node { mac } } } } } } }`
	const small = `{ machines(first: 2) { totalCount edges { node { id name } } } }`
	for _, q := range []string{large, small, `{ nope }`} {
		want, got := post(plain, q), post(ours, q)
		if got.Code != want.Code || got.Header().Get("Content-Type") != want.Header().Get("Content-Type") {
			t.Errorf("%s: status %d %q, want %d %q", q, got.Code, got.Header().Get("Content-Type"), want.Code, want.Header().Get("Content-Type"))
		}
		if strings.Contains(got.Body.String(), "prybar-data-") {
			t.Fatalf("%s: the data marker leaked: %.200s", q, got.Body.String())
		}
		var w, g any
		if err := json.Unmarshal(want.Body.Bytes(), &w); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(got.Body.Bytes(), &g); err != nil {
			t.Fatalf("%s: answer is not JSON: %v", q, err)
		}
		if !reflect.DeepEqual(w, g) {
			t.Errorf("%s: answers differ:\n%.300s\n%.300s", q, got.Body.String(), want.Body.String())
		}
		if q == large && got.Body.Len() < rawDataMin {
			t.Errorf("the large answer has only %d bytes: it does not exercise the bypass", got.Body.Len())
		}
		if q == small && got.Body.String() != want.Body.String() {
			t.Errorf("small answer changed: %s, want %s", got.Body.String(), want.Body.String())
		}
	}
}

// testAdmin stands in for the identity the auth middleware (not installed by these handler-level
// tests) would put in the request's context.
var testAdmin = &access.Identity{Name: "serial-test", Kind: access.KindToken, Role: access.Admin}
