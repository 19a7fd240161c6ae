package catalog

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/prybar/prybar/scheduler/nodestate"
)

// load builds a catalogue from in-memory files, the way LoadFS does.
func load(files map[string]string) (*Catalog, error) {
	fsys := fstest.MapFS{}
	for name, body := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(body)}
	}
	return LoadFS(fsys, "roles")
}

func TestCatalogErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string // substrings of the error, each required
	}{
		{
			name: "cycle named in order",
			files: map[string]string{"roles/x.yaml": `roles:
  - {name: c, executor: noop, requires: [a]}
  - {name: b, executor: noop, requires: [c]}
  - {name: a, executor: noop, requires: [b]}
  - {name: d, executor: noop, requires: [b]}
`},
			want: []string{`roles/x.yaml:4: role "a": dependency cycle: a -> b -> c -> a`},
		},
		{
			name: "self requirement",
			files: map[string]string{"roles/x.yaml": `roles:
  - {name: a, executor: noop, requires: [a]}
`},
			want: []string{`roles/x.yaml:2: role "a": dependency cycle: a -> a`},
		},
		{
			name: "unknown requirement with line of the entry",
			files: map[string]string{"roles/x.yaml": `roles:
  - name: x
    executor: noop
    requires:
      - noop-base
      - y
  - name: noop-base
    executor: noop
`},
			want: []string{`roles/x.yaml:6: role "x": requires unknown role "y"`},
		},
		{
			name: "requirement naming a capability",
			files: map[string]string{"roles/x.yaml": `roles:
  - {name: a, executor: noop, provides: [power]}
  - {name: b, executor: noop, requires: [power]}
`},
			want: []string{`role "b": requires unknown role "power" (it is a capability of a`},
		},
		{
			name: "duplicate across files",
			files: map[string]string{
				"roles/a.yaml": "roles:\n  - {name: a, executor: noop}\n",
				"roles/b.yaml": "\n\nroles:\n  - {name: a, executor: noop}\n",
			},
			want: []string{`roles/b.yaml:4: role "a": duplicate role (also defined at roles/a.yaml:2)`},
		},
		{
			name: "invalid schema keyword",
			files: map[string]string{"roles/x.yaml": `roles:
  - name: x
    executor: noop
    attributes:
      type: object
      properties:
        size:
          type: integr
`},
			want: []string{`roles/x.yaml:8: role "x": invalid attribute schema at /properties/size/type:`},
		},
		{
			name: "schema not an object schema",
			files: map[string]string{"roles/x.yaml": `roles:
  - name: x
    executor: noop
    attributes:
      type: string
`},
			want: []string{`roles/x.yaml:5: role "x": attributes: schema type must be object`},
		},
		{
			name: "bad pattern",
			files: map[string]string{"roles/x.yaml": `roles:
  - name: x
    executor: noop
    attributes:
      properties:
        p: {type: string, pattern: "(["}
`},
			want: []string{`role "x": invalid attribute schema`},
		},
		{
			name: "external ref refused",
			files: map[string]string{"roles/x.yaml": `roles:
  - name: x
    executor: noop
    attributes:
      properties:
        p: {$ref: "https://example.com/s.json"}
`},
			want: []string{`role "x": invalid attribute schema`, `not allowed`},
		},
		{
			name: "default does not match its schema",
			files: map[string]string{"roles/x.yaml": `roles:
  - name: x
    executor: noop
    attributes:
      type: object
      properties:
        disk:
          type: object
          properties:
            size:
              type: integer
              default: big
`},
			want: []string{`roles/x.yaml:12: role "x": attributes: default of /disk/size does not match its schema: expected integer, got string`},
		},
		{
			name: "default outside enum",
			files: map[string]string{"roles/x.yaml": `roles:
  - name: x
    executor: noop
    attributes:
      properties:
        device: {type: string, enum: [pxe, disk], default: floppy}
`},
			want: []string{`roles/x.yaml:6: role "x": attributes: default of /device does not match`},
		},
		{
			name: "default not a duration",
			files: map[string]string{"roles/x.yaml": `roles:
  - name: x
    executor: noop
    attributes:
      properties:
        delay: {type: string, format: duration, default: soon}
`},
			want: []string{`default of /delay does not match its schema: 'soon' is not valid duration: want e.g. 30s`},
		},
		{
			name: "field checks",
			files: map[string]string{"roles/x.yaml": `roles:
  - name: Bad_Name
    executor: noop
  - name: no-exec
  - name: typo
    executor: noop
    requirez: [a]
  - name: durations
    executor: noop
    timeout: 5
    retry: {attempts: 3, backoff: 2s, max_backoff: 1s}
  - name: flags
    executor: noop
    flags: {implicit: "yes", sticky: true}
  - name: lists
    executor: noop
    requires: noop
  - name: twice
    executor: noop
    executor: script
`},
			want: []string{
				`roles/x.yaml:2: role "Bad_Name": name "Bad_Name" must match [a-z0-9-]+`,
				`roles/x.yaml:4: role "no-exec": executor is required`,
				`roles/x.yaml:7: role "typo": unknown field "requirez"`,
				`roles/x.yaml:10: role "durations": timeout: bad duration "5" (want e.g. 30s, 5m)`,
				`roles/x.yaml:14: role "flags": flags: expected true or false, got "yes"`,
				`roles/x.yaml:17: role "lists": requires: expected a list of strings`,
				`roles/x.yaml:20: role "twice": field "executor" repeated (first at line 19)`,
			},
		},
		{
			name: "retry cap below backoff",
			files: map[string]string{"roles/x.yaml": `roles:
  - name: r
    executor: noop
    retry:
      attempts: 3
      backoff: 2s
      max_backoff: 1s
`},
			want: []string{`roles/x.yaml:7: role "r": retry: max_backoff 1s is below backoff 2s`},
		},
		{
			name: "unknown flag",
			files: map[string]string{"roles/x.yaml": `roles:
  - name: f
    executor: noop
    flags:
      implicit: true
      sticky: true
`},
			want: []string{`roles/x.yaml:6: role "f": flags: unknown flag "sticky"`},
		},
		{
			name:  "top level not a mapping",
			files: map[string]string{"roles/x.yaml": "- name: a\n"},
			want:  []string{`roles/x.yaml:1: expected a mapping with a roles: list`},
		},
		{
			name:  "unknown top-level key",
			files: map[string]string{"roles/x.yaml": "role:\n  - name: a\n"},
			want:  []string{`roles/x.yaml:1: unknown top-level field "role"`},
		},
		{
			name:  "yaml syntax",
			files: map[string]string{"roles/x.yaml": "roles:\n  - name: [a\n"},
			want:  []string{`roles/x.yaml: yaml: line`},
		},
		{
			name: "conflicts unknown and with own requirement",
			files: map[string]string{"roles/x.yaml": `roles:
  - {name: base, executor: noop, provides: [dhcp]}
  - name: top
    executor: noop
    requires: [base]
    conflicts: [nothing, dhcp]
`},
			want: []string{
				`roles/x.yaml:6: role "top": conflicts with unknown role or capability "nothing"`,
				`role "top": conflicts with "dhcp", which is its requirement "base"`,
			},
		},
		{
			name: "wants",
			files: map[string]string{"roles/x.yaml": `roles:
  - {name: base, executor: noop}
  - {name: other, executor: noop}
  - name: top
    executor: noop
    requires: [base]
    wants:
      - base:/ok
      - other:/x
      - no-slash
`},
			want: []string{
				`roles/x.yaml:10: role "top": want "no-slash": path must be a JSON pointer`,
			},
		},
		{
			name: "wants a role that is not an ancestor",
			files: map[string]string{"roles/x.yaml": `roles:
  - {name: base, executor: noop}
  - {name: other, executor: noop}
  - name: top
    executor: noop
    requires: [base]
    wants: [base:/ok, other:/x]
`},
			want: []string{`role "top": wants other:/x, but "other" is not among its requirements`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := load(tc.files)
			t.Log(err)
			if err == nil {
				t.Fatalf("no error; catalogue %v", c.Names())
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain\n  %s\ngot:\n  %s", w, strings.ReplaceAll(err.Error(), "\n", "\n  "))
				}
			}
		})
	}
}

func TestCycleErrorType(t *testing.T) {
	_, err := New(
		Role{Name: "b", Executor: "noop", Requires: []string{"a"}},
		Role{Name: "a", Executor: "noop", Requires: []string{"b"}},
	)
	var ce *CycleError
	if !errors.As(err, &ce) {
		t.Fatalf("want a CycleError, got %v", err)
	}
	if got, want := ce.Cycle, []string{"a", "b", "a"}; !reflect.DeepEqual(got, want) {
		t.Errorf("cycle %v, want %v", got, want)
	}
	var ee *Error
	if !errors.As(err, &ee) || ee.Role != "a" {
		t.Errorf("want *Error for role a, got %#v", ee)
	}
	if got, want := err.Error(), `role "a": dependency cycle: a -> b -> a`; got != want {
		t.Errorf("Go-built roles: got %q, want %q", got, want)
	}
}

const graph = `roles:
  - {name: root, executor: noop}
  - {name: alpha, executor: noop, requires: [root]}
  - {name: beta, executor: noop, requires: [root]}
  - {name: top, executor: noop, requires: [beta, alpha, mid]}
  - {name: mid, executor: noop, requires: [alpha]}
  - {name: lone, executor: noop}
`

func TestOrderDepthAncestors(t *testing.T) {
	roles, err := Parse("g.yaml", []byte(graph))
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(roles...)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Names(), []string{"lone", "root", "alpha", "beta", "mid", "top"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Roles order %v, want %v", got, want)
	}
	for name, want := range map[string]int{"root": 0, "lone": 0, "alpha": 1, "beta": 1, "mid": 2, "top": 3, "nope": -1} {
		if got := c.Depth(name); got != want {
			t.Errorf("Depth(%s) = %d, want %d", name, got, want)
		}
	}
	if got, want := c.Ancestors("top"), []string{"root", "alpha", "beta", "mid"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Ancestors(top) = %v, want %v", got, want)
	}
	if got := c.Ancestors("root"); len(got) != 0 {
		t.Errorf("Ancestors(root) = %v", got)
	}
	if r, ok := c.Get("mid"); !ok || r.Name != "mid" || r.Pos != (Pos{"g.yaml", 6}) {
		t.Errorf("Get(mid) = %+v, %v", r, ok)
	}
	if _, ok := c.Get("nope"); ok {
		t.Error("Get(nope) found something")
	}
}

func TestMerge(t *testing.T) {
	a, err := New(Role{Name: "a", Executor: "noop"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Role{Name: "b", Executor: "noop", Requires: []string{"a"}}); err == nil {
		t.Fatal("b alone should fail: a is unknown there")
	}
	b, err := New(Role{Name: "b", Executor: "noop", Provides: []string{"cap"}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := a.Merge(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Names(); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("merged %v", got)
	}
	if got := m.Providers("cap"); !reflect.DeepEqual(got, []string{"b"}) {
		t.Errorf("Providers(cap) = %v", got)
	}
	if _, err := m.Merge(a); err == nil || !strings.Contains(err.Error(), `role "a": duplicate role`) {
		t.Errorf("merging a duplicate: %v", err)
	}
	// Merging with the built-ins lets site roles build on them.
	site, err := Parse("site.yaml", []byte("roles:\n  - {name: site-os, executor: test, requires: [pxe-boot-once]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(site...); err == nil {
		t.Error("site roles alone should miss pxe-boot-once")
	}
	siteCat, err := Builtin().Merge(mustNew(t, Role{Name: "extra", Executor: "noop"}))
	if err != nil {
		t.Fatal(err)
	}
	if siteCat.Depth("extra") != 0 || len(siteCat.Roles()) != len(Builtin().Roles())+1 {
		t.Errorf("merge with builtin: %v", siteCat.Names())
	}
}

func mustNew(t *testing.T, roles ...Role) *Catalog {
	t.Helper()
	c, err := New(roles...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const diskRole = `roles:
  - name: disk
    executor: test
    attributes:
      type: object
      additionalProperties: false
      required: [label]
      properties:
        label: {type: string}
        disk:
          type: object
          properties:
            size: {type: integer, minimum: 1, default: 10}
            kind: {type: string, enum: [ssd, hdd], default: ssd}
        tags:
          type: array
          items: {type: string}
        timeout: {type: string, format: duration}
        addr: {type: string, format: ipv4}
        net:
          type: object
          default: {mtu: 9000}
          properties:
            mtu: {type: integer}
            vlan: {type: integer, default: 1}
`

func TestValidate(t *testing.T) {
	roles, err := Parse("disk.yaml", []byte(diskRole))
	if err != nil {
		t.Fatal(err)
	}
	c := mustNew(t, roles...)
	r, _ := c.Get("disk")
	for _, tc := range []struct {
		name  string
		attrs map[string]any
		want  string // "" = valid
	}{
		{"valid", map[string]any{"label": "x", "disk": map[string]any{"size": 4}}, ""},
		{"valid float-typed integer (from JSON)", map[string]any{"label": "x", "disk": map[string]any{"size": 4.0}}, ""},
		{"valid Go slice", map[string]any{"label": "x", "tags": []string{"a", "b"}}, ""},
		{"wrong type nested", map[string]any{"label": "x", "disk": map[string]any{"size": "big"}},
			`/disk/size: expected integer, got string`},
		{"fraction is not an integer", map[string]any{"label": "x", "disk": map[string]any{"size": 1.5}},
			`/disk/size: expected integer, got number`},
		{"minimum", map[string]any{"label": "x", "disk": map[string]any{"size": 0}}, `/disk/size: minimum`},
		{"enum", map[string]any{"label": "x", "disk": map[string]any{"kind": "tape"}}, `/disk/kind: value must be one of`},
		{"missing required", map[string]any{}, `/label: required`},
		{"nil map is the empty object", nil, `/label: required`},
		{"unknown attribute", map[string]any{"label": "x", "lable": "y"}, `/lable: unknown attribute`},
		{"array item", map[string]any{"label": "x", "tags": []any{"a", 2}}, `/tags/1: expected string, got number`},
		{"duration format", map[string]any{"label": "x", "timeout": "soon"}, `/timeout: `},
		{"ipv4 format asserted", map[string]any{"label": "x", "addr": "300.1.1.1"}, `/addr: `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := r.Validate(tc.attrs)
			t.Log(err)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			var ae *AttributeError
			if !errors.As(err, &ae) || ae.Role != "disk" {
				t.Errorf("error is %T %v, want *AttributeError for disk", err, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), `role "disk": invalid attributes: `) {
				t.Errorf("error %q lacks the role prefix", err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	roles, err := Parse("disk.yaml", []byte(diskRole))
	if err != nil {
		t.Fatal(err)
	}
	c := mustNew(t, roles...)
	r, _ := c.Get("disk")
	want := map[string]any{
		"disk": map[string]any{"size": 10.0, "kind": "ssd"},
		"net":  map[string]any{"mtu": 9000.0, "vlan": 1.0}, // explicit object default, filled by nested ones
	}
	got := r.Defaults()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Defaults = %#v\nwant %#v", got, want)
	}
	got["disk"].(map[string]any)["size"] = 99.0
	if r.Defaults()["disk"].(map[string]any)["size"] != 10.0 {
		t.Error("Defaults returns shared state")
	}
	// Defaults plus the required attribute validate.
	d := r.Defaults()
	d["label"] = "l"
	if err := r.Validate(d); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}

// TestGoBuiltRoles covers roles written in Go: their attribute schemas may
// hold Go types, the caller's values must not be shared, and a Role that never
// went through a Catalog still validates.
func TestGoBuiltRoles(t *testing.T) {
	schema := map[string]any{
		"type": "object",
		"properties": map[string]any{
			"n":    map[string]any{"type": "integer", "default": 3},
			"mode": map[string]any{"type": "string", "enum": []string{"a", "b"}, "default": "a"},
		},
	}
	req := []string{"base"}
	r := Role{Name: "go", Executor: "noop", Requires: req, Attributes: schema,
		Retry: nodestate.RetryPolicy{Attempts: 2, Initial: time.Second}}
	c := mustNew(t, Role{Name: "base", Executor: "noop"}, r)
	req[0] = "changed"
	got, _ := c.Get("go")
	if got.Requires[0] != "base" {
		t.Error("catalogue shares the caller's slice")
	}
	if !reflect.DeepEqual(got.Defaults(), map[string]any{"n": 3.0, "mode": "a"}) {
		t.Errorf("Defaults = %v", got.Defaults())
	}
	if err := got.Validate(map[string]any{"mode": "c"}); err == nil || !strings.Contains(err.Error(), "/mode:") {
		t.Errorf("Validate: %v", err)
	}
	// Not via a catalogue.
	if err := r.Validate(map[string]any{"n": "x"}); err == nil || !strings.Contains(err.Error(), "/n: expected integer") {
		t.Errorf("unprepared Validate: %v", err)
	}
	if d := r.Defaults(); d["n"] != 3 {
		t.Errorf("unprepared Defaults = %v", d)
	}
	if err := (&Role{Name: "free", Executor: "noop"}).Validate(map[string]any{"x": 1}); err != nil {
		t.Errorf("role without schema rejected attributes: %v", err)
	}
}

func TestParseShapes(t *testing.T) {
	data := `# two documents, anchors, a full role
roles:
  - name: full
    description: everything
    executor: bmc
    requires: [base]
    provides: [power]
    conflicts: []
    flags: {implicit: true, cluster: true, destructive: true, discovery: true}
    wants: ["base:/x", /y]
    retry: {attempts: 4, backoff: 2s, max_backoff: 1m}
    timeout: 90s
    attributes: &schema
      type: object
      properties:
        when: {type: string, default: 2024-01-01}
---
roles:
  - name: base
    executor: noop
    attributes:
      type: object
      properties:
        x: {type: string}
---
`
	roles, err := Parse("full.yaml", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(roles) != 2 {
		t.Fatalf("%d roles", len(roles))
	}
	r := roles[0]
	if r.Flags != (Flags{true, true, true, true}) || r.Timeout != 90*time.Second ||
		r.Retry != (nodestate.RetryPolicy{Attempts: 4, Initial: 2 * time.Second, Max: time.Minute}) ||
		!reflect.DeepEqual(r.Wants, []Want{{"base", "/x"}, {"", "/y"}}) || r.Description != "everything" {
		t.Errorf("parsed %+v", r)
	}
	// An unquoted date stays the string it was written as.
	if d := r.Defaults(); d["when"] != "2024-01-01" {
		t.Errorf("date default = %#v", d["when"])
	}
	if _, err := New(roles...); err != nil {
		t.Error(err)
	}
	if rs, err := Parse("empty.yaml", []byte("# nothing yet\n")); err != nil || len(rs) != 0 {
		t.Errorf("empty file: %v, %v", rs, err)
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "site")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("roles:\n  - {name: a, executor: noop}\n"), 0o644)
	os.WriteFile(filepath.Join(sub, "b.yml"), []byte("roles:\n  - {name: b, executor: noop, requires: [a]}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("not a role"), 0o644)
	c, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Names(); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("names %v", got)
	}
	if r, _ := c.Get("b"); r.Pos.File != filepath.Join(dir, "site", "b.yml") {
		t.Errorf("b's file = %q", r.Pos.File)
	}
	os.WriteFile(filepath.Join(sub, "c.yaml"), []byte("roles:\n  - {name: c, executor: noop, requires: [zz]}\n"), 0o644)
	_, err = LoadDir(dir)
	if want := filepath.Join(dir, "site", "c.yaml") + `:2: role "c": requires unknown role "zz"`; err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	if _, err := LoadDir(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing directory loaded")
	}
}

func TestBuiltin(t *testing.T) {
	c := Builtin()
	if c != Builtin() {
		t.Error("Builtin loads twice")
	}
	want := []string{
		"noop-base", "test-step",
		"bmc-discover", "bmc-power-on", "bmc-power-off", "bmc-power-cycle", "pxe-boot-once",
		"provisioner-base", "network", "os-install", "ready",
		"pxe-discover", "agent-inventory", "discovered-ready", "agent-script", "pxe-os-install", "local-boot",
	}
	for _, n := range want {
		r, ok := c.Get(n)
		if !ok {
			t.Errorf("built-in role %s missing", n)
			continue
		}
		if r.Description == "" || r.Executor == "" {
			t.Errorf("%s: no description or executor", n)
		}
		// Each role's defaults are acceptable input on their own.
		if err := r.Validate(r.Defaults()); err != nil {
			t.Errorf("%s: defaults invalid: %v", n, err)
		}
	}
	if len(c.Roles()) != len(want) {
		t.Errorf("built-in roles %v, want exactly %v", c.Names(), want)
	}
	get := func(n string) *Role { r, _ := c.Get(n); return r }

	if r := get("noop-base"); r.Executor != "noop" || !r.Flags.Implicit {
		t.Errorf("noop-base: %+v", r)
	}
	if d := get("test-step").Defaults(); !reflect.DeepEqual(d, map[string]any{"delay": "0s", "fail_rate": 0.0, "fail": false}) {
		t.Errorf("test-step defaults %v", d)
	}
	ts := get("test-step")
	for _, bad := range []map[string]any{{"fail_rate": 1.5}, {"delay": "soon"}, {"fail": "yes"}, {"effcet": "x"}} {
		if err := ts.Validate(bad); err == nil {
			t.Errorf("test-step accepted %v", bad)
		}
	}
	if err := ts.Validate(map[string]any{"effect": "hello", "delay": "10ms", "fail_rate": 0.5}); err != nil {
		t.Error(err)
	}

	if r := get("bmc-discover"); r.Executor != "bmc" || !r.Flags.Discovery || r.Defaults()["action"] != "inventory" {
		t.Errorf("bmc-discover: %+v %v", r.Flags, r.Defaults())
	}
	for n, destructive := range map[string]bool{"bmc-power-on": false, "bmc-power-off": true, "bmc-power-cycle": true} {
		r := get(n)
		if r.Executor != "bmc" || r.Flags.Destructive != destructive {
			t.Errorf("%s: executor %s destructive %v", n, r.Executor, r.Flags.Destructive)
		}
		if a := r.Defaults()["action"]; a != strings.TrimPrefix(n, "bmc-") {
			t.Errorf("%s: action %v", n, a)
		}
	}
	// The action is pinned: attributes cannot turn power-on into power-off.
	if err := get("bmc-power-on").Validate(map[string]any{"action": "power-off"}); err == nil {
		t.Error("bmc-power-on accepted action power-off")
	}
	if _, ok := get("bmc-power-cycle").Retry.Retry(1); ok {
		t.Error("power-cycle retries automatically")
	}

	pxe := get("pxe-boot-once")
	if !reflect.DeepEqual(pxe.Requires, []string{"bmc-discover"}) || pxe.Executor != "bmc" {
		t.Errorf("pxe-boot-once: %+v", pxe)
	}
	if d := pxe.Defaults(); d["device"] != "pxe" || d["persistent"] != false {
		t.Errorf("pxe-boot-once defaults %v", d)
	}
	if c.Depth("pxe-boot-once") != 1 {
		t.Errorf("pxe-boot-once depth %d", c.Depth("pxe-boot-once"))
	}

	if got := c.Ancestors("ready"); !reflect.DeepEqual(got, []string{"provisioner-base", "network", "os-install"}) {
		t.Errorf("chain ancestors %v", got)
	}
	for i, n := range []string{"provisioner-base", "network", "os-install", "ready"} {
		if c.Depth(n) != i {
			t.Errorf("Depth(%s) = %d, want %d", n, c.Depth(n), i)
		}
	}
	if w := get("os-install").Wants; !reflect.DeepEqual(w, []Want{{"network", "/interface"}}) {
		t.Errorf("os-install wants %v", w)
	}
	if get("os-install").Pos.File != "builtin/crowbar-chain.yaml" {
		t.Errorf("os-install declared at %v", get("os-install").Pos)
	}
}

func TestParseWant(t *testing.T) {
	for in, want := range map[string]Want{
		"/a":          {"", "/a"},
		"/a/b":        {"", "/a/b"},
		"net-role:/a": {"net-role", "/a"},
	} {
		got, err := ParseWant(in)
		if err != nil || got != want || got.String() != in {
			t.Errorf("ParseWant(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "a", "/", "/a/", "//a", "Role:/a", ":/a", "r:"} {
		if _, err := ParseWant(in); err == nil {
			t.Errorf("ParseWant(%q) succeeded", in)
		}
	}
}
