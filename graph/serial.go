package graph

import (
	"context"
	"io"
	"sync"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
)

// marshalSliceSerial is graphql.MarshalSliceConcurrently without the goroutines: `make generate`
// (internal/gqlgenerate) points the generated executor at it. Each element gets its own
// FieldContext with its index and a panic in one element is reported and nulls that element, as in
// gqlgen's version (without a worker limit, which one worker makes irrelevant). The elements'
// contexts, field contexts and indexes are allocated in one block per list rather than three
// allocations per element (a 10,000-machine topology query has 50,000 elements).
func marshalSliceSerial(
	ctx context.Context,
	length int,
	_ int64,
	omitPanicHandler bool,
	marshalElement func(ctx context.Context, i int) graphql.Marshaler,
) graphql.Array {
	ret := make(graphql.Array, length)
	ctxs, idx := make([]fieldCtx, length), make([]int, length)
	parent := graphql.GetFieldContext(ctx)
	for i := range length {
		// A client that went away (or a cancelled request) stops the walk here, within one
		// element, instead of after the whole result has been built for nobody.
		if i%64 == 0 && ctx.Err() != nil {
			for j := i; j < length; j++ {
				ret[j] = graphql.Null
			}
			return ret
		}
		idx[i] = i
		c := &ctxs[i]
		c.Context, c.fc.Index, c.fc.Parent = ctx, &idx[i], parent
		ret[i] = marshalOne(c, i, omitPanicHandler, marshalElement)
	}
	return ret
}

// isNilInterface is ResolveField's test of a resolved value (a nil interface is null), for the
// generated shortcut of a field whose Go type may be an interface (internal/gqlgenerate).
func isNilInterface(v any) bool { return v == nil }

// fieldCtx is the context graphql.WithFieldContext makes — its parent plus one FieldContext whose
// Parent is the parent's — in one allocation with the FieldContext instead of two.
type fieldCtx struct {
	context.Context
	fc graphql.FieldContext
}

// Value answers gqlgen's field-context key (graphql.GetFieldContext) with the FieldContext.
func (c *fieldCtx) Value(k any) any {
	if k == fieldCtxKey {
		return &c.fc
	}
	return c.Context.Value(k)
}

// withFieldContext is graphql.WithFieldContext(ctx, fc) for a FieldContext nothing else holds
// (it is copied: set fields on the one graphql.GetFieldContext returns).
func withFieldContext(ctx context.Context, fc *graphql.FieldContext) context.Context {
	c := &fieldCtx{Context: ctx, fc: *fc}
	c.fc.Parent = graphql.GetFieldContext(ctx)
	return c
}

// fieldCtxKey is gqlgen's (unexported) context key for the FieldContext, learnt by asking
// graphql.GetFieldContext once; TestFieldCtx checks that gqlgen still finds the FieldContext.
var fieldCtxKey = func() any {
	p := &keyProbe{Context: context.Background()}
	graphql.GetFieldContext(p)
	if p.key == nil {
		panic("graph: graphql.GetFieldContext asked its context for no key")
	}
	return p.key
}()

type keyProbe struct {
	context.Context
	key any
}

func (p *keyProbe) Value(k any) any {
	p.key = k
	return nil
}

func marshalOne(
	ctx context.Context,
	i int,
	omitPanicHandler bool,
	marshalElement func(ctx context.Context, i int) graphql.Marshaler,
) (m graphql.Marshaler) {
	if !omitPanicHandler {
		defer func() {
			if r := recover(); r != nil {
				graphql.AddError(ctx, graphql.Recover(ctx, r))
				m = graphql.Null
			}
		}()
	}
	return marshalElement(ctx, i)
}

// serialFieldSet is what `make generate` (internal/gqlgenerate) puts in place of graphql.FieldSet
// in the marshaller of every object whose fields are resolved on the calling goroutine (all but
// the root Query). It has the fields the generated code uses (Values, Invalids, Dispatch) and
// writes the same JSON, without what only concurrent or deferred fields need: graphql.FieldSet's
// MarshalGQL allocates a map, an iterator closure and a copy of every CollectedField per object,
// about a quarter of the topology query's allocations (docs/benchmarks.md). Values of up to
// eight fields live in the struct, so a typical object costs one allocation instead of two.
type serialFieldSet struct {
	fields   []graphql.CollectedField
	Values   []graphql.Marshaler
	Invalids uint32
	inline   [8]graphql.Marshaler
}

func newSerialFieldSet(fields []graphql.CollectedField) *serialFieldSet {
	s := &serialFieldSet{fields: fields}
	if len(fields) <= len(s.inline) {
		s.Values = s.inline[:len(fields)]
	} else {
		s.Values = make([]graphql.Marshaler, len(fields))
	}
	return s
}

// Dispatch does nothing: no field of a serial object is deferred to a goroutine.
func (s *serialFieldSet) Dispatch(context.Context) {}

var (
	openBrace  = []byte{'{'}
	closeBrace = []byte{'}'}
	comma      = []byte{','}
	quote      = []byte{'"'}
	quoteColon = []byte{'"', ':'}
)

// MarshalGQL writes the object as graphql.FieldSet does: fields in order, an alias written once.
// Aliases are GraphQL names ([_A-Za-z][_0-9A-Za-z]*, checked by the parser), so they need no
// escaping.
func (s *serialFieldSet) MarshalGQL(w io.Writer) {
	w.Write(openBrace)
	first := true
fields:
	for i := range s.fields {
		alias := s.fields[i].Alias
		for j := range i {
			if s.fields[j].Alias == alias {
				continue fields // CollectFields merges same-alias fields; kept for parity
			}
		}
		if !first {
			w.Write(comma)
		}
		first = false
		w.Write(quote)
		io.WriteString(w, alias)
		w.Write(quoteColon)
		s.Values[i].MarshalGQL(w)
	}
	w.Write(closeBrace)
}

// plainFields reports whether leaf fields that only read a struct field of a basic type may skip
// gqlgen's per-field machinery (a FieldContext, a context, four closures and a boxed value per
// field; see internal/gqlgenerate). It is true only for servers built by NewHandler, which
// installs no field middleware (AroundFields / graphql.FieldInterceptor): with one installed, every
// field must go through graphql.ResolveField so the middleware sees it. Fields with a directive
// are never plain (the generator leaves them alone), so schema directives always run.
func (ec *executionContext) plainFields() bool {
	r, ok := ec.Resolvers.(*Resolver)
	return ok && r.plainFields
}

// collectMemo remembers, for one operation, which fields each (selection set, object type) pair
// collects. graphql.CollectFields caches too, but builds its key by hashing the type names (an
// allocation and a hash per object: 10,000s per topology query); this key is three pointers' worth
// of identity: the selection set's backing array and length, and the generated implementors
// slice. The result depends only on those and the operation (its variables and fragments), and
// the executionContext holding the memo lives for one operation.
type collectMemo struct {
	mu sync.Mutex
	m  map[collectKey][]graphql.CollectedField
}

type collectKey struct {
	sel       *ast.Selection
	n         int
	satisfies *string
}

// collectFieldsMemo is graphql.CollectFields(oc, sel, satisfies), memoised in m (the generated
// executionContext's collected field; a function, not a method, because the field exists only
// after post-processing and gqlgen type-checks this package before it).
func collectFieldsMemo(m *collectMemo, oc *graphql.OperationContext, sel ast.SelectionSet, satisfies []string) []graphql.CollectedField {
	if len(sel) == 0 || len(satisfies) == 0 {
		return graphql.CollectFields(oc, sel, satisfies)
	}
	k := collectKey{sel: &sel[0], n: len(sel), satisfies: &satisfies[0]}
	m.mu.Lock()
	fields, ok := m.m[k]
	m.mu.Unlock()
	if ok {
		return fields
	}
	fields = graphql.CollectFields(oc, sel, satisfies)
	m.mu.Lock()
	if m.m == nil {
		m.m = map[collectKey][]graphql.CollectedField{}
	}
	m.m[k] = fields
	m.mu.Unlock()
	return fields
}

// argsMemo remembers, for one operation, each field's arguments by its AST node (see
// internal/gqlgenerate memoArgs): they depend only on the node and the operation's variables,
// and the executionContext holding the memo lives for one operation. The maps are shared by
// every FieldContext of that field, so they must only be read (resolvers do).
type argsMemo struct {
	mu sync.Mutex
	m  map[*ast.Field]map[string]any
}

func (a *argsMemo) get(f *ast.Field) (map[string]any, bool) {
	a.mu.Lock()
	args, ok := a.m[f]
	a.mu.Unlock()
	return args, ok
}

func (a *argsMemo) put(f *ast.Field, args map[string]any) {
	a.mu.Lock()
	if a.m == nil {
		a.m = map[*ast.Field]map[string]any{}
	}
	a.m[f] = args
	a.mu.Unlock()
}
