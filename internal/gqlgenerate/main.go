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
// graph/serial.go after rendering. Everything else is `gqlgen generate` unchanged.
package main

import (
	"bytes"
	"fmt"
	"os"

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

// postProcess edits the rendered executor:
//   - gqlgen's goroutine-per-element list marshaller is replaced with marshalSliceSerial
//     (graph/serial.go), which has the same signature and semantics;
//   - in an object marshaller that starts no concurrent field (so never takes &deferred, the only
//     way a @defer'd field joins the group), the eagerly built DeferredGroup becomes its zero
//     value: graphql.NewDeferredGroup computes the object's full path for every object, the
//     largest allocation of the topology query, and an empty group is never processed.
func postProcess(path string) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	from, to := []byte("graphql.MarshalSliceConcurrently("), []byte("marshalSliceSerial(")
	if !bytes.Contains(src, from) {
		return fmt.Errorf("%s: no %s call to replace: has gqlgen's template changed?", path, from)
	}
	src = bytes.ReplaceAll(src, from, to)

	const sep = "\nfunc "
	newGroup := []byte("deferred := graphql.NewDeferredGroup(ctx)")
	funcs := bytes.Split(src, []byte(sep))
	replaced := 0
	for i, f := range funcs {
		if bytes.Contains(f, newGroup) && !bytes.Contains(f, []byte("&deferred")) {
			funcs[i] = bytes.Replace(f, newGroup, []byte("var deferred graphql.DeferredGroup"), 1)
			replaced++
		}
	}
	if replaced == 0 {
		return fmt.Errorf("%s: no %s to replace: has gqlgen's template changed?", path, newGroup)
	}
	return os.WriteFile(path, bytes.Join(funcs, []byte(sep)), 0o644)
}
