package graph

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/prybar/prybar/internal/access"
)

// Query cost limits, checked before execution (issue 10): on a 2,000-machine database a 44 KB
// query of 500 aliased machines(first:1000){nics} ran 84 s in 4.4 GB, and a 176-byte machines →
// rack → machines fan-out took 2.3 GB.
const (
	// MaxPage is the largest first/last: a bigger page is refused with an error naming the
	// limit, never silently truncated. Clients page with after/before.
	MaxPage = 1000
	// MaxAliases bounds aliased fields per operation (aliases are how one request asks for the
	// same expensive field hundreds of times).
	MaxAliases = 50
	// MaxComplexity bounds the estimated number of objects an operation produces (scalars and
	// the connection/edge wrappers are free: memory and time go with rows). The topology query
	// (sites → racks → machines → nics/disks/bmc, no page sizes) estimates 221,100; 50 aliased
	// machines(first: 1000) { nics } estimate 550,000.
	MaxComplexity = 300_000
	// ExpensiveComplexity marks an operation as expensive: each identity runs at most
	// MaxExpensivePerIdentity of them at once.
	ExpensiveComplexity     = 20_000
	MaxExpensivePerIdentity = 2
)

// List sizes the estimate assumes when a list field has no first/last.
const (
	// rootListSize: an unpaged list at the top of the query.
	rootListSize = 100
	// nestedListSize: an unpaged list below another object (a rack's machines, a machine's NICs).
	nestedListSize = 10
	// revisitListSize: an unpaged list of a type the path has already passed through
	// (machines → rack → machines): it repeats rows the query already has and multiplies by the
	// whole parent list each time, so it is costed as the worst case.
	revisitListSize = MaxPage
)

// CodeQueryTooComplex and friends are extensions.code of refused operations.
const (
	CodeQueryTooComplex  = "QUERY_TOO_COMPLEX"
	CodePageTooLarge     = "PAGE_TOO_LARGE"
	CodeTooManyAliases   = "TOO_MANY_ALIASES"
	CodeTooManyExpensive = "TOO_MANY_EXPENSIVE_QUERIES"
)

// costLimit is a gqlgen extension refusing operations over the limits above before they run,
// and bounding concurrent expensive operations per identity.
type costLimit struct {
	schema *ast.Schema
	mu     sync.Mutex
	active map[string]int
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
	graphql.OperationInterceptor
} = (*costLimit)(nil)

func (*costLimit) ExtensionName() string { return "CostLimit" }
func (c *costLimit) Validate(s graphql.ExecutableSchema) error {
	c.schema = s.Schema()
	c.active = map[string]int{}
	return nil
}

func refused(code, format string, args ...any) *gqlerror.Error {
	return &gqlerror.Error{Message: fmt.Sprintf(format, args...), Extensions: map[string]any{"code": code}}
}

func (c *costLimit) MutateOperationContext(ctx context.Context, rc *graphql.OperationContext) *gqlerror.Error {
	if rc.Operation == nil {
		return nil
	}
	w := &costWalker{schema: c.schema, vars: rc.Variables, frags: rc.Doc.Fragments}
	root := c.schema.Query
	switch rc.Operation.Operation {
	case ast.Mutation:
		root = c.schema.Mutation
	case ast.Subscription:
		root = c.schema.Subscription
	}
	cost := w.selection(rc.Operation.SelectionSet, root, nil, 0)
	if w.err != nil {
		return w.err
	}
	if w.aliases > MaxAliases {
		return refused(CodeTooManyAliases, "the operation uses %d aliases; the limit is %d", w.aliases, MaxAliases)
	}
	if cost > MaxComplexity {
		return refused(CodeQueryTooComplex, "the operation's estimated cost is %d; the limit is %d (page with first/after, and avoid walking back to a type the query already lists)", int64(cost), MaxComplexity)
	}
	rc.Stats.SetExtension("cost", int64(cost))
	return nil
}

func (c *costLimit) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	rc := graphql.GetOperationContext(ctx)
	cost, _ := rc.Stats.GetExtension("cost").(int64)
	if cost < ExpensiveComplexity || rc.Operation == nil || rc.Operation.Operation == ast.Subscription {
		return next(ctx)
	}
	key := "anonymous"
	if id := access.From(ctx); id != nil {
		key = id.Actor()
	}
	c.mu.Lock()
	if c.active[key] >= MaxExpensivePerIdentity {
		c.mu.Unlock()
		return graphql.OneShot(&graphql.Response{Errors: gqlerror.List{refused(CodeTooManyExpensive,
			"%s already runs %d expensive queries; wait for one to finish", key, MaxExpensivePerIdentity)}})
	}
	c.active[key]++
	c.mu.Unlock()
	release := sync.OnceFunc(func() {
		c.mu.Lock()
		if c.active[key]--; c.active[key] <= 0 {
			delete(c.active, key)
		}
		c.mu.Unlock()
	})
	h := next(ctx)
	return func(ctx context.Context) *graphql.Response {
		r := h(ctx)
		release()
		return r
	}
}

// costWalker estimates an operation's cost: every object counts 1, times the sizes of the lists
// above it (first/last when given, else the defaults above).
type costWalker struct {
	schema  *ast.Schema
	vars    map[string]any
	frags   ast.FragmentDefinitionList
	aliases int
	err     *gqlerror.Error
}

const maxFragmentDepth = 32

func (w *costWalker) selection(set ast.SelectionSet, parent *ast.Definition, path []string, fragDepth int) float64 {
	if fragDepth > maxFragmentDepth || w.err != nil {
		return 0
	}
	total := 0.0
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			total += w.field(s, parent, path, fragDepth)
		case *ast.InlineFragment:
			def := parent
			if s.TypeCondition != "" {
				if d := w.schema.Types[s.TypeCondition]; d != nil {
					def = d
				}
			}
			total += w.selection(s.SelectionSet, def, path, fragDepth+1)
		case *ast.FragmentSpread:
			if f := w.frags.ForName(s.Name); f != nil {
				def := w.schema.Types[f.TypeCondition]
				if def == nil {
					def = parent
				}
				total += w.selection(f.SelectionSet, def, path, fragDepth+1)
			}
		}
		if total > MaxComplexity*10 {
			return total // far over already: stop walking a bomb
		}
	}
	return total
}

func (w *costWalker) field(f *ast.Field, parent *ast.Definition, path []string, fragDepth int) float64 {
	if f.Alias != "" && f.Alias != f.Name {
		w.aliases++
	}
	if parent == nil || strings.HasPrefix(f.Name, "__") {
		return 1
	}
	def := parent.Fields.ForName(f.Name)
	if def == nil {
		return 0
	}
	n, explicit := w.pageSize(f, def)
	if w.err != nil {
		return 0
	}
	named := def.Type.Name()
	elem := strings.TrimSuffix(named, "Connection")
	isConnection := elem != named
	inConnection := strings.HasSuffix(parent.Name, "Connection") || strings.HasSuffix(parent.Name, "Edge")
	mult := 1.0
	if isConnection || (def.Type.Elem != nil && !inConnection) {
		switch {
		case explicit:
			mult = float64(n)
		case contains(path, elem):
			mult = revisitListSize
		case len(path) == 0:
			mult = rootListSize
		default:
			mult = nestedListSize
		}
	}
	if len(f.SelectionSet) == 0 {
		return 0
	}
	self := 1.0
	if isConnection || strings.HasSuffix(named, "Edge") || named == "PageInfo" {
		self = 0
	}
	child := w.schema.Types[named]
	next := path
	if !inConnection && !isConnection || isConnection {
		next = append(path[:len(path):len(path)], elem)
	}
	return mult * (self + w.selection(f.SelectionSet, child, next, fragDepth))
}

// pageSize reads first/last (resolving variables) and refuses pages over MaxPage.
func (w *costWalker) pageSize(f *ast.Field, def *ast.FieldDefinition) (int, bool) {
	size, explicit := 0, false
	for _, name := range []string{"first", "last"} {
		if def.Arguments.ForName(name) == nil {
			continue
		}
		a := f.Arguments.ForName(name)
		if a == nil {
			continue
		}
		v, err := a.Value.Value(w.vars)
		if err != nil || v == nil {
			continue
		}
		var n int64
		switch x := v.(type) {
		case int64:
			n = x
		case int:
			n = int64(x)
		case float64:
			n = int64(x)
		case json.Number:
			n, _ = x.Int64()
		default:
			continue
		}
		if n > MaxPage {
			w.err = refused(CodePageTooLarge, "%s(%s: %d): the largest page is %d; page with after/before", f.Name, name, n, MaxPage)
			w.err.Path = ast.Path{ast.PathName(f.Alias)}
			return 0, false
		}
		if n < 0 {
			w.err = refused(CodePageTooLarge, "%s(%s: %d): a page size cannot be negative", f.Name, name, n)
			return 0, false
		}
		size, explicit = max(size, int(n)), true
	}
	return size, explicit
}

func contains(path []string, s string) bool {
	for _, p := range path {
		if p == s {
			return true
		}
	}
	return false
}
