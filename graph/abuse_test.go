package graph_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vektah/gqlparser/v2/ast"

	"github.com/prybar/prybar/graph"
	"github.com/prybar/prybar/internal/access"
	"github.com/prybar/prybar/internal/apitest"
)

// noRequiredArgs reports whether f can be selected without arguments.
func noRequiredArgs(f *ast.FieldDefinition) bool {
	for _, a := range f.Arguments {
		if a.Type.NonNull && a.DefaultValue == nil {
			return false
		}
	}
	return true
}

func isObject(s *ast.Schema, name string) bool {
	d := s.Types[name]
	return d != nil && (d.Kind == ast.Object || d.Kind == ast.Interface)
}

// nodeOf is the element type of a connection or list field, or "" when f is neither.
func nodeOf(f *ast.FieldDefinition) string {
	n := f.Type.Name()
	if e, ok := strings.CutSuffix(n, "Connection"); ok {
		return e
	}
	if f.Type.Elem != nil {
		return n
	}
	return ""
}

// listSel wraps inner as the selection of list/connection field f (with args).
func listSel(f *ast.FieldDefinition, args, inner string) string {
	if strings.HasSuffix(f.Type.Name(), "Connection") {
		return f.Name + args + " { edges { node { " + inner + " } } }"
	}
	return f.Name + args + " { " + inner + " }"
}

func firstArg(f *ast.FieldDefinition, n int) string {
	if f.Arguments.ForName("first") != nil {
		return fmt.Sprintf("(first: %d)", n)
	}
	return ""
}

// bombs builds abusive queries from the schema, so every type added later is covered.
func bombs(s *ast.Schema) map[string]string {
	out := map[string]string{}
	// Depth: follow object fields without arguments 40 levels down.
	var sel func(def *ast.Definition, depth int) string
	sel = func(def *ast.Definition, depth int) string {
		if depth == 0 {
			return "__typename"
		}
		for _, f := range def.Fields {
			if isObject(s, f.Type.Name()) && noRequiredArgs(f) && !strings.HasPrefix(f.Name, "__") && f.Type.Elem == nil {
				next := s.Types[f.Type.Name()]
				if strings.HasSuffix(next.Name, "Connection") {
					continue
				}
				if inner := sel(next, depth-1); inner != "" {
					return f.Name + " { " + inner + " }"
				}
			}
		}
		return ""
	}
	for _, f := range s.Query.Fields {
		n := nodeOf(f)
		if n == "" || !noRequiredArgs(f) || !isObject(s, n) {
			continue
		}
		node := s.Types[n]
		if inner := sel(node, 40); inner != "" {
			out["depth "+f.Name] = "{ " + listSel(f, firstArg(f, 1), inner) + " }"
		}
		// Alias: the same page 60 times.
		var b strings.Builder
		b.WriteString("{ ")
		for i := range 60 {
			fmt.Fprintf(&b, "a%d: %s ", i, listSel(f, firstArg(f, 1000), "__typename"))
		}
		b.WriteString("}")
		out["alias "+f.Name] = b.String()
		// Complexity: a full page of every type's lists, each a full page.
		for _, g := range node.Fields {
			if m := nodeOf(g); m != "" && noRequiredArgs(g) && isObject(s, m) && g.Arguments.ForName("first") != nil {
				out["complexity "+f.Name+"."+g.Name] = "{ " + listSel(f, firstArg(f, 1000), listSel(g, firstArg(g, 1000), "__typename")) + " }"
			}
		}
		// Fan-out: T → to-one U → list of T → U → list of T.
		for _, g := range node.Fields {
			if g.Type.Elem != nil || !isObject(s, g.Type.Name()) || !noRequiredArgs(g) || strings.HasSuffix(g.Type.Name(), "Connection") {
				continue
			}
			for _, h := range s.Types[g.Type.Name()].Fields {
				if nodeOf(h) == n && noRequiredArgs(h) {
					inner := listSel(h, "", g.Name+" { "+listSel(h, "", "__typename")+" }")
					out["fan-out "+f.Name+"."+g.Name+"."+h.Name] = "{ " + listSel(f, "", g.Name+" { "+inner+" }") + " }"
				}
			}
		}
		if f.Arguments.ForName("first") != nil {
			out["page "+f.Name] = "{ " + listSel(f, "(first: 5000)", "__typename") + " }"
		}
	}
	return out
}

func peakRSS(t *testing.T) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Issue 10, abuse: depth, alias, complexity, fan-out and page-size bombs built from the schema
// are refused before execution (no SQL beyond authenticating the request); a cancelled query
// stops; the process's peak RSS stays under 500 MB on a 10,000-machine database throughout.
func TestAbuse(t *testing.T) {
	st := apitest.Open(t, apitest.DSN(t, apitest.SQLite))
	start := time.Now()
	fleet(t, st, 10_000)
	t.Logf("10,000 machines loaded in %s", time.Since(start).Round(time.Millisecond))
	// Peak RSS from here on (writing 5 to clear_refs resets VmHWM).
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Logf("cannot reset the peak RSS (%v): it includes the loading", err)
	}
	srv := apitest.Serve(t, st)
	tok := token(t, srv, "abuser", access.Admin)
	c := as(srv, tok)
	// Baseline: the statements a trivial request costs (authentication).
	if r, _ := c.Do(`{ __typename }`, nil); len(r.Errors) > 0 {
		t.Fatal(r.Errors)
	}
	before := st.Counter.Statements()
	c.Do(`{ __typename }`, nil)
	base := st.Counter.Statements() - before

	schema := graph.NewExecutableSchema(graph.Config{}).Schema()
	all := bombs(schema)
	kinds := map[string]int{}
	var slowest time.Duration
	for name, q := range all {
		before := st.Counter.Statements()
		t0 := time.Now()
		r, err := c.Do(q, nil)
		d := time.Since(t0)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(r.Errors) == 0 || (len(r.Data) > 0 && string(r.Data) != "null") {
			t.Errorf("%s: not refused (%d bytes of data)\n%.300s", name, len(r.Data), q)
			continue
		}
		if n := st.Counter.Statements() - before; n > base {
			t.Errorf("%s: %d SQL statements before being refused (authentication alone: %d)", name, n, base)
		}
		slowest = max(slowest, d)
		kinds[strings.Fields(name)[0]]++
	}
	for _, k := range []string{"depth", "alias", "complexity", "fan-out", "page"} {
		if kinds[k] == 0 {
			t.Errorf("no %s bomb could be built from the schema", k)
		}
	}
	t.Logf("%d bombs refused before execution (%v); slowest refusal %s (on a shared machine)", len(all), kinds, slowest.Round(time.Microsecond))

	// The page-size error names the limit.
	r, _ := c.Do(`{ machines(first: 5000) { totalCount } }`, nil)
	if len(r.Errors) == 0 || !strings.Contains(r.Errors[0].Message, fmt.Sprint(graph.MaxPage)) || r.Errors[0].Extensions["code"] != graph.CodePageTooLarge {
		t.Errorf("first: 5000 → %+v", r.Errors)
	}

	// A legitimate heavy query still runs: the whole topology.
	t0 := time.Now()
	var topo struct{ Sites struct{ TotalCount int } }
	srv.Query(t, topology, nil, &topo)
	full := time.Since(t0)
	t.Logf("topology of 10,000 machines: %s", full.Round(time.Millisecond))

	// Cancelled: the client leaves during the topology query; the server stops working on it.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := (&apitest.Client{URL: srv.URL, Token: tok}).DoContext(ctx, topology, nil)
		done <- err
	}()
	time.Sleep(full / 4)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Logf("the query finished before the cancel (%v): cancellation not exercised", err)
	} else {
		time.Sleep(time.Second)
		c0 := cpuTime()
		time.Sleep(time.Second)
		used := cpuTime() - c0
		t.Logf("CPU used in the second after the first second after cancelling: %s", used.Round(time.Millisecond))
		if used > 300*time.Millisecond {
			t.Errorf("the server still works on a cancelled query: %s CPU in 1 s, 1 s after the cancel", used)
		}
	}
	rss := peakRSS(t)
	t.Logf("peak RSS through the abuse: %d MB", rss>>20)
	if rss > 500<<20 {
		t.Errorf("peak RSS %d MB, over 500 MB", rss>>20)
	}
}
