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
	"strings"

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
//     (executionContext.plainFields, graph/serial.go): see plainLeaf; any other field that only
//     reads a struct field gets a lighter one: see plainField;
//   - a field's arguments are worked out once per operation, not once per object: see memoArgs.
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
	if memo := []byte("\targs      argsMemo\n"); !bytes.Contains(src, memo) {
		at := bytes.Index(src, ecType) + len(ecType) + len("\tcollected collectMemo\n")
		src = append(append(append([]byte{}, src[:at]...), memo...), src[at:]...)
	}
	funcs := bytes.Split(src, []byte(sep))
	serial, sets, plain, memo := 0, 0, 0, 0
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
		if g, ok := memoArgs(f, src); ok {
			f = g
			memo++
		}
		if g, ok := plainLeaf(f, src); ok {
			f = g
		} else if g, ok := plainField(f); ok {
			f = g
		}
		if bytes.Contains(f, []byte(plainMark)) {
			plain++
		}
		funcs[i] = f
	}
	if serial == 0 || sets == 0 || plain == 0 || memo == 0 && !bytes.Contains(src, []byte("ec.args.get(")) {
		return fmt.Errorf("%s: %d serial object marshallers, %d serial field sets, %d plain fields, %d memoised arguments: has gqlgen's template changed?", path, serial, sets, plain, memo)
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

// resolvedField matches gqlgen's rendering of a field with no directive (its middleware argument
// is nil): group 1 is the field context function, 2 the resolver's body, 3 the value type, 4 the
// marshaller, 5 whether a panic is recovered, 6 whether ResolveField was told the field is
// non-null.
var resolvedField = regexp.MustCompile(`^\(ec \*executionContext\) _\w+\(ctx context\.Context, field graphql\.CollectedField, obj \S+\) \(ret graphql\.Marshaler\) \{\n` +
	`\treturn graphql\.ResolveField\(\n\t\tctx,\n\t\tec\.OperationContext,\n\t\tfield,\n` +
	`\t\tfunc\(ctx context\.Context, field graphql\.CollectedField\) \(\*graphql\.FieldContext, error\) \{\n\t\t\treturn ec\.(fieldContext_\w+)\(ctx, field\)\n\t\t\},\n` +
	`\t\tfunc\(ctx context\.Context\) \(any, error\) \{\n((?:\t\t\t.*\n)+?)\t\t\},\n` +
	`\t\tnil,\n` +
	`\t\tfunc\(ctx context\.Context, selections ast\.SelectionSet, v ([^)]+)\) graphql\.Marshaler \{\n\t\t\treturn ec\.([^(\s]+)\(ctx, selections, v\)\n\t\t\},\n` +
	`\t\t(true|false),\n\t\t(true|false),\n\t\)\n\}`)

// structRead is a resolver body that only reads a struct field.
var structRead = regexp.MustCompile(`^\t\t\treturn (obj\.\w+), nil\n$`)

// plainField inserts, at the top of a field without directives, the steps graphql.ResolveField
// takes for it, minus what only field middleware needs:
//
//	if ec.plainFields() {
//		fc := field context; ctx = withFieldContext(ctx, fc); recover a panic to null;
//		resolve (the same resolver body, called directly); an error or a nil interface is null
//		(an error when non-null) exactly as ResolveField decides;
//		return ec.marshalX(ctx, field.Selections, v)
//	}
//
// The FieldContext stays (children's error paths and resolvers read it), allocated with its
// context (graph/serial.go withFieldContext); what goes are the four closures, the escaping copy
// of the CollectedField, the middleware chain's closure and the value ResolveField stores for
// middleware (FieldContext.Result, read only by middleware). A body that only reads a struct
// field (edges, nodes, nested objects, enums) is not even boxed. A 10,000-machine topology query
// resolves about 110,000 such fields.
func plainField(f []byte) ([]byte, bool) {
	m := resolvedField.FindSubmatchIndex(f)
	if m == nil || bytes.Contains(f, []byte(plainMark)) {
		return f, false
	}
	fieldCtx, body, typ, marshal := string(f[m[2]:m[3]]), string(f[m[4]:m[5]]), string(f[m[6]:m[7]]), string(f[m[8]:m[9]])
	recoverPanic, nonNull := string(f[m[10]:m[11]]) == "true", string(f[m[12]:m[13]]) == "true"
	var b strings.Builder
	w := func(lines ...string) {
		for _, l := range lines {
			b.WriteString("\t\t" + l + "\n")
		}
	}
	b.WriteString(plainMark)
	w("fc, err := ec."+fieldCtx+"(ctx, field)", "if err != nil {", "\treturn graphql.Null", "}", "ctx = withFieldContext(ctx, fc)")
	if recoverPanic {
		w("defer func() {", "\tif r := recover(); r != nil {", "\t\tec.OperationContext.Error(ctx, ec.OperationContext.Recover(ctx, r))",
			"\t\tret = graphql.Null", "\t}", "}()")
	}
	null := func(indent string) {
		if nonNull {
			w(indent+"graphql.AddInvalidNullError(ctx, \"\")", indent+"return graphql.Null")
			return
		}
		w(indent+"if fc.NonNull {", indent+"\tgraphql.AddInvalidNullError(ctx, \"\")", indent+"\treturn graphql.RequiredNull", indent+"}", indent+"return graphql.Null")
	}
	if r := structRead.FindStringSubmatch(body); r != nil {
		w("v := " + r[1])
		// ResolveField boxes the value and treats only a nil interface as null: a pointer, slice
		// or map never boxes to one (its typed nil goes to the marshaller, which writes null);
		// any other named type might be an interface, so it is asked (isNilInterface).
		if !strings.HasPrefix(typ, "*") && !strings.HasPrefix(typ, "[]") && !strings.HasPrefix(typ, "map[") {
			w("if isNilInterface(v) {")
			null("\t")
			w("}")
		}
		w("return ec." + marshal + "(ctx, field.Selections, v)")
	} else {
		b.WriteString("\t\tresTmp, err := func(ctx context.Context) (any, error) {\n" + body + "\t\t}(ctx)\n")
		w("if err != nil {", "\tec.OperationContext.Error(ctx, graphql.AddFieldLocationToError(ctx, err))")
		if !nonNull {
			w("\tif fc.NonNull {", "\t\treturn graphql.RequiredNull", "\t}")
		}
		w("\treturn graphql.Null", "}", "if resTmp == nil {")
		null("\t")
		w("}", "if v, ok := resTmp.("+typ+"); ok {", "\treturn ec."+marshal+"(ctx, field.Selections, v)", "}",
			"if v, ok := resTmp.(graphql.Marshaler); ok {", "\treturn v", "}",
			"var want "+typ,
			"graphql.AddErrorf(ctx, `unexpected type %T from middleware/directive chain, should be %T`, resTmp, want)",
			"return graphql.Null")
	}
	b.WriteString("\t}\n")
	at := bytes.Index(f, []byte("{\n")) + 2
	out := append(append(append([]byte{}, f[:at]...), b.String()...), f[at:]...)
	return out, true
}

// argsField matches the end of a field context function that works out the field's arguments.
var argsField = regexp.MustCompile(`\tif fc\.Args, err = ec\.(field_\w+_args)\(ctx, field\.ArgumentMap\(ec\.Variables\)\); err != nil \{\n\t\tec\.Error\(ctx, err\)\n\t\treturn fc, err\n\t\}\n\treturn fc, nil\n\}`)

// memoArgs makes a field context function take the field's arguments from the operation's memo
// (graph/serial.go argsMemo) and put them there the first time. A field's arguments depend only
// on its AST node and the operation's variables, yet gqlgen works them out for every object the
// field appears on (an argument map, a map, six closures and boxed values: the connection
// fields of a 10,000-machine topology query did it 20,000 times). Resolvers only read
// FieldContext.Args. Fields whose argument function runs directives are left alone (a
// directive may depend on more than the AST).
func memoArgs(f, src []byte) ([]byte, bool) {
	m := argsField.FindSubmatchIndex(f)
	if m == nil || bytes.Contains(f, []byte("ec.args.get(")) {
		return f, false
	}
	argsFn := string(f[m[2]:m[3]])
	def := bytes.Index(src, []byte("\nfunc (ec *executionContext) "+argsFn+"("))
	if def < 0 {
		return f, false
	}
	end := bytes.Index(src[def+1:], []byte("\nfunc "))
	if end < 0 || bytes.Contains(src[def:def+1+end], []byte("Directive")) {
		return f, false
	}
	deferAt := bytes.Index(f, []byte("\tdefer func() {\n"))
	if deferAt < 0 || deferAt > m[0] {
		return f, false
	}
	out := append([]byte{}, f[:deferAt]...)
	out = append(out, "\tif args, ok := ec.args.get(field.Field); ok {\n\t\tfc.Args = args\n\t\treturn fc, nil\n\t}\n"...)
	out = append(out, f[deferAt:m[0]]...)
	out = append(out, "\tif fc.Args, err = ec."+argsFn+"(ctx, field.ArgumentMap(ec.Variables)); err != nil {\n\t\tec.Error(ctx, err)\n\t\treturn fc, err\n\t}\n"+
		"\tec.args.put(field.Field, fc.Args)\n\treturn fc, nil\n}"...)
	out = append(out, f[m[1]:]...)
	return out, true
}
