// Command gqlgenerate runs gqlgen (`make generate`) with one project plugin that makes the
// generated executor resolve object fields and lists on the calling goroutine.
//
// Why: gqlgen starts one goroutine per element of every list of objects
// (graphql.MarshalSliceConcurrently) and one per "concurrent" field of every object (a resolver,
// or a method taking a context, which is what every ent edge method is). Prybar's resolvers
// eager-load nested edges with a constant number of SQL statements, so those fields only read
// memory; the goroutines cost far more than the work (the 10,000-machine topology query spent most
// of its time starting, scheduling and collecting them; see docs/benchmarks.md). Root fields of
// Query stay concurrent as gqlgen generates them. gqlgen has no configuration for this (it sets
// codegen.Object.DisableConcurrency only for Mutation), so the plugin sets it on every non-root
// object before the executor is rendered, and the list helper is swapped for the serial one in
// graph/serial.go after rendering. The same post-processing then trims gqlgen's per-object and
// per-field allocations (see postProcess). Everything else is `gqlgen generate` unchanged.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"regexp"

	"github.com/99designs/gqlgen/api"
	"github.com/99designs/gqlgen/codegen"
	"github.com/99designs/gqlgen/codegen/config"
)

// serialFields is a gqlgen plugin (plugin.CodeGenerator) that runs before the executor is
// rendered and marks every non-root object as not concurrent.
type serialFields struct{}

func (serialFields) Name() string { return "prybar-serial-fields" }

func (serialFields) GenerateCode(data *codegen.Data) error {
	for _, o := range data.Objects {
		if !o.Root {
			o.DisableConcurrency = true
		}
	}
	return nil
}

func main() {
	post := flag.String("post", "", "only reapply the post-processing to this already generated file")
	flag.Parse()
	if *post != "" {
		if err := postProcess(*post); err != nil {
			fmt.Fprintln(os.Stderr, "gqlgenerate:", err)
			os.Exit(4)
		}
		return
	}
	cfg, err := config.LoadConfigFromDefaultLocations()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gqlgenerate: loading gqlgen.yml:", err)
		os.Exit(2)
	}
	if err := api.Generate(cfg, api.AddPlugin(serialFields{})); err != nil {
		fmt.Fprintln(os.Stderr, "gqlgenerate:", err)
		os.Exit(3)
	}
	if err := postProcess(cfg.Exec.Filename); err != nil {
		fmt.Fprintln(os.Stderr, "gqlgenerate:", err)
		os.Exit(4)
	}
}

// postProcess edits the rendered executor. Each step is idempotent (`-post FILE` reapplies them to
// an already processed file) and fails loudly when it finds neither gqlgen's text nor its own, so
// a template change in a gqlgen upgrade cannot slip through silently:
//   - gqlgen's goroutine-per-element list marshaller is replaced with marshalSliceSerial
//     (graph/serial.go), which has the same signature and semantics;
//   - in an object marshaller that starts no concurrent field (so never takes &deferred, the only
//     way a @defer'd field joins the group), the eagerly built DeferredGroup becomes its zero
//     value: graphql.NewDeferredGroup computes the object's full path for every object, the
//     largest allocation of the topology query, and an empty group is never processed;
//   - such a marshaller also collects its fields in graph.serialFieldSet instead of
//     graphql.FieldSet (same fields used, same JSON, far fewer allocations), and asks
//     collectFieldsMemo (a per-operation memo keyed by identity, graph/serial.go)
//     instead of graphql.CollectFields, whose cache hashes the type names on every object;
//   - a plain leaf field gets a shortcut taken when the server installs no field middleware
//     (executionContext.plainFields, graph/serial.go): see plainLeaf.
func postProcess(path string) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	from, to := []byte("graphql.MarshalSliceConcurrently("), []byte("marshalSliceSerial(")
	if !bytes.Contains(src, from) && !bytes.Contains(src, to) {
		return fmt.Errorf("%s: no %s call to replace: has gqlgen's template changed?", path, from)
	}
	src = bytes.ReplaceAll(src, from, to)

	const sep = "\nfunc "
	newGroup := []byte("deferred := graphql.NewDeferredGroup(ctx)")
	zeroGroup := []byte("var deferred graphql.DeferredGroup")
	newSet, serialSet := []byte("out := graphql.NewFieldSet(fields)"), []byte("out := newSerialFieldSet(fields)")
	ecType := []byte("type executionContext struct {\n\t*graphql.ExecutionContextState[ResolverRoot, DirectiveRoot, ComplexityRoot]\n")
	if !bytes.Contains(src, ecType) {
		return fmt.Errorf("%s: no %s: has gqlgen's template changed?", path, ecType)
	}
	if memo := []byte("\tcollected collectMemo\n"); !bytes.Contains(src, append(ecType, memo...)) {
		src = bytes.Replace(src, ecType, append(ecType, memo...), 1)
	}
	funcs := bytes.Split(src, []byte(sep))
	serial, sets, plain := 0, 0, 0
	for i, f := range funcs {
		if bytes.Contains(f, newGroup) && !bytes.Contains(f, []byte("&deferred")) {
			f = bytes.Replace(f, newGroup, zeroGroup, 1)
		}
		if bytes.Contains(f, zeroGroup) {
			serial++
			if !bytes.Contains(f, []byte("Concurrently(")) && bytes.Contains(f, newSet) {
				f = bytes.Replace(f, newSet, serialSet, 1)
			}
			if bytes.Contains(f, serialSet) {
				sets++
				f = bytes.Replace(f, []byte("graphql.CollectFields(ec.OperationContext, sel, "), []byte("collectFieldsMemo(&ec.collected, ec.OperationContext, sel, "), 1)
			}
		}
		if g, ok := plainLeaf(f, src); ok {
			f = g
		}
		if bytes.Contains(f, []byte(plainMark)) {
			plain++
		}
		funcs[i] = f
	}
	if serial == 0 || sets == 0 || plain == 0 {
		return fmt.Errorf("%s: %d serial object marshallers, %d serial field sets, %d plain fields: has gqlgen's template changed?", path, serial, sets, plain)
	}
	return os.WriteFile(path, bytes.Join(funcs, []byte(sep)), 0o644)
}

// plainMark starts the shortcut plainLeaf inserts.
const plainMark = "\tif ec.plainFields() {\n"

// leafField matches gqlgen's rendering of a field resolved by reading a struct field, with no
// directive (the middleware argument is nil) and no field arguments checked below.
var leafField = regexp.MustCompile(`^\(ec \*executionContext\) _\w+\(ctx context\.Context, field graphql\.CollectedField, obj \S+\) \(ret graphql\.Marshaler\) \{\n` +
	`\treturn graphql\.ResolveField\(\n\t\tctx,\n\t\tec\.OperationContext,\n\t\tfield,\n` +
	`\t\tfunc\(ctx context\.Context, field graphql\.CollectedField\) \(\*graphql\.FieldContext, error\) \{\n\t\t\treturn ec\.(fieldContext_\w+)\(ctx, field\)\n\t\t\},\n` +
	`\t\tfunc\(ctx context\.Context\) \(any, error\) \{\n\t\t\treturn (obj\.\w+), nil\n\t\t\},\n` +
	`\t\tnil,\n` +
	`\t\tfunc\(ctx context\.Context, selections ast\.SelectionSet, v [^)]+\) graphql\.Marshaler \{\n\t\t\treturn ec\.([^(\s]+)\(ctx, selections, v\)\n\t\t\},\n`)

// plainMarshallers are the scalar marshallers a plain leaf may call without a FieldContext: for
// these the value can never marshal to null or fail, so nothing would need the field's path (N:
// non-null basic types; O: nullable pointers, nil → null without an error).
var plainMarshallers = map[string]bool{
	"marshalNString2string": true, "marshalNInt2int": true, "marshalNInt2int64": true,
	"marshalNBoolean2bool": true, "marshalNID2int": true,
	"marshalOString2ᚖstring": true, "marshalOInt2ᚖint": true, "marshalOInt2ᚖint64": true,
	"marshalOBoolean2ᚖbool": true, "marshalOID2ᚖint": true,
}

// plainLeaf inserts, at the top of a plain leaf field's resolver,
//
//	if ec.plainFields() { return ec.marshalX(ctx, field.Selections, obj.Field) }
//
// A plain leaf: the value is a struct field read (no resolver, no method, no context), the field
// has no directive and no arguments (its field context is graphql.NewScalarFieldContext), and its
// marshaller is in plainMarshallers. graphql.ResolveField would build a FieldContext, a context,
// four closures and a boxed value only to call the field middleware, of which NewHandler installs
// none; with middleware installed plainFields is false and the full path runs.
func plainLeaf(f, src []byte) ([]byte, bool) {
	m := leafField.FindSubmatchIndex(f)
	if m == nil || bytes.Contains(f, []byte(plainMark)) {
		return f, false
	}
	fieldCtx, value, marshal := string(f[m[2]:m[3]]), string(f[m[4]:m[5]]), string(f[m[6]:m[7]])
	if !plainMarshallers[marshal] {
		return f, false
	}
	scalarCtx := "func (ec *executionContext) " + fieldCtx + "(_ context.Context, field graphql.CollectedField) (fc *graphql.FieldContext, err error) {\n\treturn graphql.NewScalarFieldContext("
	if !bytes.Contains(src, []byte(scalarCtx)) {
		return f, false
	}
	body := bytes.Index(f, []byte("{\n")) + 2
	short := plainMark + "\t\treturn ec." + marshal + "(ctx, field.Selections, " + value + ")\n\t}\n"
	out := append(append(append([]byte{}, f[:body]...), short...), f[body:]...)
	return out, true
}
