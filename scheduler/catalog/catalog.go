// Package catalog is Prybar's role catalogue: the roles an operator can bind
// to machines, declared in YAML and validated as a whole before anything uses
// them.
//
// A file holds one or more roles under a top-level "roles:" list (several YAML
// documents per file are allowed too):
//
//	roles:
//	  - name: pxe-boot-once
//	    description: Boot from the network on the next power-on.
//	    executor: bmc
//	    requires: [bmc-discover]
//	    provides: [boot-override]
//	    conflicts: []
//	    flags: {implicit: false, cluster: false, destructive: false, discovery: false}
//	    attributes:             # JSON Schema (draft 2020-12) for the role's attributes
//	      type: object
//	      properties:
//	        device: {type: string, enum: [pxe, disk], default: pxe}
//	    wants: ["bmc-discover:/bmc/address"]   # [role:]/json/pointer read from ancestors
//	    retry: {attempts: 3, backoff: 2s, max_backoff: 1m}
//	    timeout: 5m
//
// Everything is checked when a Catalog is built (New, Merge, LoadDir, LoadFS):
// names, requirements, cycles, conflicts, schemas and their defaults. A
// mistake is reported with the file and line it came from, so a bad role file
// fails at start-up with a message pointing at the line, not at run time on
// some machine.
//
// Requirements name roles. Capabilities (provides) exist so that conflicts can
// name a function ("dhcp-server") rather than every role that implements it.
package catalog

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/prybar/prybar/scheduler/nodestate"
)

// Role is one entry of the catalogue. Treat a Role obtained from a Catalog as
// read-only: it is shared.
type Role struct {
	Name        string
	Description string
	// Executor names the executor that runs the role (noop, test, bmc, …).
	// The catalogue does not know the executors; the scheduler checks that
	// each one exists.
	Executor  string
	Requires  []string // role names
	Provides  []string // capabilities
	Conflicts []string // role names or capabilities
	Flags     Flags
	// Attributes is the JSON Schema of the role's attributes, in the form
	// encoding/json produces (map[string]any, []any, float64, …). Nil means
	// the role accepts any attributes.
	Attributes map[string]any
	// Wants lists attributes the role reads from its ancestors ("attribute
	// injection"); a change to one of them re-anneals the role.
	Wants []Want
	// Retry is the automatic retry policy; the zero value leaves failures
	// to an operator.
	Retry nodestate.RetryPolicy
	// Timeout bounds one run; 0 means the executor's default.
	Timeout time.Duration
	// Pos is where the role was declared; zero for roles built in Go.
	Pos Pos

	schema   *jsonschema.Schema
	defaults map[string]any
	lines    map[string]int // "requires/1", "attributes/properties/x" … → line
}

// Flags are the OpenCrowbar role flags.
type Flags struct {
	// Implicit roles are satisfied on the same machine: binding a role
	// that requires one binds it on that machine too.
	Implicit bool
	// Cluster roles make every peer binding in the deployment a parent.
	Cluster bool
	// Destructive roles destroy state (power off, wipe); the API asks for
	// confirmation.
	Destructive bool
	// Discovery roles run on machines not yet provisioned.
	Discovery bool
}

// Want is one attribute a role reads from its ancestors: a JSON pointer into
// the ancestors' attributes, optionally restricted to one ancestor role.
type Want struct {
	Role string // "" = whichever ancestor has it
	Path string // JSON pointer, e.g. /bmc/address
}

func (w Want) String() string {
	if w.Role == "" {
		return w.Path
	}
	return w.Role + ":" + w.Path
}

// ParseWant parses "[role:]/path".
func ParseWant(s string) (Want, error) {
	var w Want
	if i := strings.IndexByte(s, ':'); i >= 0 {
		w.Role, s = s[:i], s[i+1:]
		if !validName(w.Role) {
			return Want{}, fmt.Errorf("want %q: bad role name %q", w.Role+":"+s, w.Role)
		}
	}
	if !strings.HasPrefix(s, "/") || len(s) < 2 || strings.Contains(s, "//") || strings.HasSuffix(s, "/") {
		return Want{}, fmt.Errorf("want %q: path must be a JSON pointer like /disk/size", s)
	}
	w.Path = s
	return w, nil
}

// Pos is a position in a role file.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string {
	switch {
	case p.File != "" && p.Line > 0:
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	case p.File != "":
		return p.File
	case p.Line > 0:
		return fmt.Sprintf("line %d", p.Line)
	}
	return ""
}

// Error is a catalogue mistake, located as precisely as the source allows:
//
//	roles/x.yaml:12: role "x": requires unknown role "y"
type Error struct {
	Pos  Pos
	Role string // "" when the mistake is not inside a role
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder
	if p := e.Pos.String(); p != "" {
		b.WriteString(p)
		b.WriteString(": ")
	}
	if e.Role != "" {
		fmt.Fprintf(&b, "role %q: ", e.Role)
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// CycleError is the Err of an Error reporting a requirement cycle. Cycle
// starts and ends with the same role, rotated so that it starts with the
// alphabetically smallest, so one cycle always reads the same.
type CycleError struct{ Cycle []string }

func (e *CycleError) Error() string {
	return "dependency cycle: " + strings.Join(e.Cycle, " -> ")
}

// errorList collects Errors and returns them sorted by position, so a run
// reports every mistake at once and in a stable order.
type errorList []*Error

func (l *errorList) add(pos Pos, role string, format string, args ...any) {
	*l = append(*l, &Error{Pos: pos, Role: role, Err: fmt.Errorf(format, args...)})
}

func (l errorList) err() error {
	if len(l) == 0 {
		return nil
	}
	sort.SliceStable(l, func(i, j int) bool {
		if l[i].Pos.File != l[j].Pos.File {
			return l[i].Pos.File < l[j].Pos.File
		}
		if l[i].Pos.Line != l[j].Pos.Line {
			return l[i].Pos.Line < l[j].Pos.Line
		}
		return l[i].Role < l[j].Role
	})
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// at returns the position of a field of the role (a path like "requires/1"),
// falling back to the role's own line.
func (r *Role) at(path string) Pos {
	p := r.Pos
	if line, ok := r.lines[path]; ok {
		p.Line = line
	}
	return p
}

// Catalog is a validated, immutable set of roles.
type Catalog struct {
	byName map[string]*Role
	order  []*Role // requirements first, then by name
	depth  map[string]int
}

// New validates roles as a set and returns the catalogue. All mistakes are
// reported, joined, each as an *Error.
func New(roles ...Role) (*Catalog, error) {
	ptrs := make([]*Role, len(roles))
	for i := range roles {
		ptrs[i] = &roles[i]
	}
	return build(ptrs)
}

// Merge returns a catalogue holding the roles of both; a role defined in both
// is a duplicate, not an override, so a site's files cannot silently replace
// a built-in role.
func (c *Catalog) Merge(other *Catalog) (*Catalog, error) {
	var rs []*Role
	if c != nil {
		rs = append(rs, c.order...)
	}
	if other != nil {
		rs = append(rs, other.order...)
	}
	return build(rs)
}

func build(roles []*Role) (*Catalog, error) {
	var errs errorList
	c := &Catalog{byName: map[string]*Role{}, depth: map[string]int{}}
	for _, orig := range roles {
		// Always a private copy, prepared afresh: roles from Parse may have
		// been edited since, and a merged catalogue must not write into the
		// roles of the catalogues it came from.
		r := new(Role)
		*r = *orig
		r.Requires = slices.Clone(r.Requires)
		r.Provides = slices.Clone(r.Provides)
		r.Conflicts = slices.Clone(r.Conflicts)
		r.Wants = slices.Clone(r.Wants)
		errs = append(errs, r.prepare()...)
		if prev, dup := c.byName[r.Name]; dup {
			where := prev.Pos.String()
			if where == "" {
				where = "elsewhere"
			}
			errs.add(r.Pos, r.Name, "duplicate role (also defined at %s)", where)
			continue
		}
		c.byName[r.Name] = r
	}

	provided := map[string][]string{} // capability → roles
	for _, r := range c.byName {
		for _, p := range r.Provides {
			provided[p] = append(provided[p], r.Name)
		}
	}
	for _, r := range c.byName {
		for i, q := range r.Requires {
			if _, ok := c.byName[q]; ok {
				continue
			}
			if by := provided[q]; len(by) > 0 {
				slices.Sort(by)
				errs.add(r.at(fmt.Sprintf("requires/%d", i)), r.Name,
					"requires unknown role %q (it is a capability of %s; require one of those roles)",
					q, strings.Join(by, ", "))
				continue
			}
			errs.add(r.at(fmt.Sprintf("requires/%d", i)), r.Name, "requires unknown role %q", q)
		}
		for i, x := range r.Conflicts {
			if _, ok := c.byName[x]; !ok && len(provided[x]) == 0 {
				errs.add(r.at(fmt.Sprintf("conflicts/%d", i)), r.Name,
					"conflicts with unknown role or capability %q", x)
			}
		}
	}

	if cyc := findCycles(c.byName); len(cyc) > 0 {
		for _, cy := range cyc {
			r := c.byName[cy[0]]
			errs = append(errs, &Error{Pos: r.Pos, Role: r.Name, Err: &CycleError{Cycle: cy}})
		}
		return nil, errs.err()
	}

	for _, r := range c.order0() {
		c.depth[r.Name] = 0
		for _, q := range r.Requires {
			if d, ok := c.depth[q]; ok && d+1 > c.depth[r.Name] {
				c.depth[r.Name] = d + 1
			}
		}
	}
	c.order = c.order0()
	slices.SortStableFunc(c.order, func(a, b *Role) int {
		if da, db := c.depth[a.Name], c.depth[b.Name]; da != db {
			return da - db
		}
		return strings.Compare(a.Name, b.Name)
	})

	for _, r := range c.order {
		errs = append(errs, c.checkRelations(r, provided)...)
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// order0 returns the roles in a topological order (DFS post-order over
// sorted names) so depths can be computed in one pass; only call it on an
// acyclic set.
func (c *Catalog) order0() []*Role {
	var out []*Role
	seen := map[string]bool{}
	var visit func(string)
	visit = func(n string) {
		r, ok := c.byName[n]
		if !ok || seen[n] {
			return
		}
		seen[n] = true
		for _, q := range slices.Sorted(slices.Values(r.Requires)) {
			visit(q)
		}
		out = append(out, r)
	}
	for _, n := range slices.Sorted(maps.Keys(c.byName)) {
		visit(n)
	}
	return out
}

// findCycles returns each requirement cycle once, found by a DFS over sorted
// names so the result does not depend on map order.
func findCycles(byName map[string]*Role) [][]string {
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	var cycles [][]string
	seenCycle := map[string]bool{}
	var visit func(string)
	visit = func(n string) {
		color[n] = grey
		stack = append(stack, n)
		for _, q := range slices.Sorted(slices.Values(byName[n].Requires)) {
			if _, ok := byName[q]; !ok {
				continue // reported as an unknown requirement
			}
			switch color[q] {
			case white:
				visit(q)
			case grey:
				i := slices.Index(stack, q)
				cy := canonicalCycle(stack[i:])
				if k := strings.Join(cy, " "); !seenCycle[k] {
					seenCycle[k] = true
					cycles = append(cycles, cy)
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
	}
	for _, n := range slices.Sorted(maps.Keys(byName)) {
		if color[n] == white {
			visit(n)
		}
	}
	return cycles
}

// canonicalCycle rotates a cycle to start at its smallest name and closes it:
// [b c a] → [a b c a].
func canonicalCycle(path []string) []string {
	m := 0
	for i, n := range path {
		if n < path[m] {
			m = i
		}
	}
	out := append(slices.Clone(path[m:]), path[:m]...)
	return append(out, out[0])
}

// checkRelations checks what needs the whole, acyclic graph: conflicts with
// the role's own ancestry (it could never be bound) and wants naming a role
// that is not an ancestor.
func (c *Catalog) checkRelations(r *Role, provided map[string][]string) errorList {
	var errs errorList
	anc := c.Ancestors(r.Name)
	own := append([]string{r.Name}, anc...)
	for i, x := range r.Conflicts {
		for _, a := range own {
			ar := c.byName[a]
			if x == a || (a != r.Name && slices.Contains(ar.Provides, x)) {
				what := "itself"
				if a != r.Name {
					what = fmt.Sprintf("its requirement %q", a)
				}
				errs.add(r.at(fmt.Sprintf("conflicts/%d", i)), r.Name,
					"conflicts with %q, which is %s", x, what)
				break
			}
		}
	}
	for i, w := range r.Wants {
		if w.Role != "" && !slices.Contains(anc, w.Role) {
			errs.add(r.at(fmt.Sprintf("wants/%d", i)), r.Name,
				"wants %s, but %q is not among its requirements", w, w.Role)
		}
	}
	return errs
}

// Roles returns every role, requirements before the roles that need them;
// roles of equal depth are sorted by name. This is the cohort order the
// scheduler uses.
func (c *Catalog) Roles() []*Role { return slices.Clone(c.order) }

// Names returns the role names in the order of Roles.
func (c *Catalog) Names() []string {
	out := make([]string, len(c.order))
	for i, r := range c.order {
		out[i] = r.Name
	}
	return out
}

// Get returns the named role.
func (c *Catalog) Get(name string) (*Role, bool) {
	r, ok := c.byName[name]
	return r, ok
}

// Depth is the length of the longest requirement chain below the role: 0
// for a role that requires nothing, -1 for an unknown role.
func (c *Catalog) Depth(name string) int {
	d, ok := c.depth[name]
	if !ok {
		return -1
	}
	return d
}

// Ancestors returns every role the named role requires, directly or not,
// requirements first (the order of Roles). Unknown names have none.
func (c *Catalog) Ancestors(name string) []string {
	r, ok := c.byName[name]
	if !ok {
		return nil
	}
	seen := map[string]bool{}
	var walk func(*Role)
	walk = func(r *Role) {
		for _, q := range r.Requires {
			if qr, ok := c.byName[q]; ok && !seen[q] {
				seen[q] = true
				walk(qr)
			}
		}
	}
	walk(r)
	out := make([]string, 0, len(seen))
	for _, x := range c.order {
		if seen[x.Name] {
			out = append(out, x.Name)
		}
	}
	return out
}

// Providers returns the roles providing a capability, sorted by name.
func (c *Catalog) Providers(capability string) []string {
	var out []string
	for _, r := range c.order {
		if slices.Contains(r.Provides, capability) {
			out = append(out, r.Name)
		}
	}
	slices.Sort(out)
	return out
}
