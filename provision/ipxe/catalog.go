// Package ipxe is Prybar's boot-script side of network boot: the bootenv catalogue (what a machine
// boots into), the pure rendering of a machine's iPXE script and of its installer templates, the
// per-boot completion tokens, and the boot HTTP handler (/boot/ipxe, /boot/template, /boot/assets,
// /boot/done).
//
// Bootenvs are declared in YAML, like roles, and validated as a whole (names, duplicates, every
// template parsed) before anything is stored; mistakes are reported as "file:line: bootenv "x":
// what: why". The built-ins (discovery, local, debian-12-install) are embedded; `prybar bootenvs
// load DIR` adds an operator's. The Bootenv table holds the loaded set and is what the HTTP
// handler renders from.
package ipxe

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/template"

	"gopkg.in/yaml.v3"
)

// Bootenv is one boot environment of the catalogue.
type Bootenv struct {
	Name        string
	Description string
	// Kernel and Initrd are asset paths (served from --boot-assets under /boot/assets/) or
	// absolute http(s) URLs.
	Kernel string
	Initrd []string
	// Cmdline is the kernel command line, a template (see Data).
	Cmdline string
	// Script is the iPXE script template; empty means the standard kernel/initrd/boot script.
	Script string
	// Templates are extra files (preseed, kickstart, cloud-init …) served rendered at
	// /boot/template/<name>.
	Templates map[string]string
	Builtin   bool
	// Source is "file:line" where the bootenv was declared.
	Source string
}

// Error is one mistake in a bootenv file.
type Error struct {
	File    string
	Line    int
	Bootenv string
	Msg     string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Bootenv != "" {
		fmt.Fprintf(&b, "bootenv %q: ", e.Bootenv)
	}
	b.WriteString(e.Msg)
	return b.String()
}

type errorList []error

func (l *errorList) add(file string, line int, env, format string, args ...any) {
	*l = append(*l, &Error{File: file, Line: line, Bootenv: env, Msg: fmt.Sprintf(format, args...)})
}

func (l errorList) err() error {
	if len(l) == 0 {
		return nil
	}
	return errors.Join(l...)
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// Parse reads the bootenvs of one YAML file (a top-level "bootenvs:" list). name is the file name
// used in errors. Each bootenv is checked on its own (fields, templates); checks across bootenvs
// happen in NewCatalog.
func Parse(name string, data []byte) ([]Bootenv, error) {
	var out []Bootenv
	var errs errorList
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs.add(name, 0, "", "%v", err)
			break
		}
		if len(doc.Content) == 0 {
			continue
		}
		top := doc.Content[0]
		if top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
			continue
		}
		if top.Kind != yaml.MappingNode {
			errs.add(name, top.Line, "", "expected a mapping with a bootenvs: list")
			continue
		}
		for i := 0; i+1 < len(top.Content); i += 2 {
			k, v := top.Content[i], top.Content[i+1]
			if k.Value != "bootenvs" {
				errs.add(name, k.Line, "", "unknown top-level field %q (want bootenvs)", k.Value)
				continue
			}
			if v.Kind != yaml.SequenceNode {
				errs.add(name, v.Line, "", "bootenvs must be a list")
				continue
			}
			for _, item := range v.Content {
				b, berrs := parseBootenv(name, item)
				errs = append(errs, berrs...)
				out = append(out, b)
			}
		}
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return out, nil
}

func parseBootenv(file string, n *yaml.Node) (Bootenv, errorList) {
	var errs errorList
	b := Bootenv{Source: fmt.Sprintf("%s:%d", file, n.Line)}
	if n.Kind != yaml.MappingNode {
		errs.add(file, n.Line, "", "a bootenv must be a mapping")
		return b, errs
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "name" {
			b.Name = n.Content[i+1].Value
		}
	}
	bad := func(at *yaml.Node, format string, args ...any) { errs.add(file, at.Line, b.Name, format, args...) }
	str := func(k, v *yaml.Node, dst *string) {
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
			bad(v, "%s: expected a string", k.Value)
			return
		}
		*dst = v.Value
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if seen[k.Value] {
			bad(k, "field %q repeated", k.Value)
			continue
		}
		seen[k.Value] = true
		switch k.Value {
		case "name":
			str(k, v, &b.Name)
		case "description":
			str(k, v, &b.Description)
		case "kernel":
			str(k, v, &b.Kernel)
		case "cmdline":
			str(k, v, &b.Cmdline)
		case "script":
			str(k, v, &b.Script)
		case "initrd":
			switch v.Kind {
			case yaml.ScalarNode:
				var s string
				str(k, v, &s)
				b.Initrd = []string{s}
			case yaml.SequenceNode:
				for _, it := range v.Content {
					var s string
					str(k, it, &s)
					b.Initrd = append(b.Initrd, s)
				}
			default:
				bad(v, "initrd: expected a string or a list of strings")
			}
		case "templates":
			if v.Kind != yaml.MappingNode {
				bad(v, "templates: expected a mapping of name: template")
				continue
			}
			b.Templates = map[string]string{}
			for j := 0; j+1 < len(v.Content); j += 2 {
				tk, tv := v.Content[j], v.Content[j+1]
				if !nameRE.MatchString(tk.Value) {
					bad(tk, "templates: bad name %q (lower-case letters, digits, . _ -)", tk.Value)
					continue
				}
				if _, dup := b.Templates[tk.Value]; dup {
					bad(tk, "templates: %q repeated", tk.Value)
					continue
				}
				var s string
				str(tk, tv, &s)
				b.Templates[tk.Value] = s
				if _, err := parseTemplate(tk.Value, s); err != nil {
					bad(tv, "templates: %s: %v", tk.Value, err)
				}
			}
		default:
			bad(k, "unknown field %q (want name, description, kernel, initrd, cmdline, script, templates)", k.Value)
		}
	}
	if !nameRE.MatchString(b.Name) {
		bad(n, "name: %q is not a valid bootenv name (lower-case letters, digits, . _ -)", b.Name)
	}
	if b.Script == "" && b.Kernel == "" {
		bad(n, "needs a kernel or a script")
	}
	for _, ref := range append([]string{b.Kernel}, b.Initrd...) {
		if ref != "" && !validRef(ref) {
			bad(n, "%q: want an asset path inside --boot-assets (no .., not absolute) or an http(s) URL", ref)
		}
	}
	if _, err := parseTemplate("cmdline", b.Cmdline); err != nil {
		bad(n, "cmdline: %v", err)
	}
	if _, err := parseTemplate("script", b.Script); err != nil {
		bad(n, "script: %v", err)
	}
	if b.Script != "" && !strings.HasPrefix(b.Script, "#!ipxe") {
		bad(n, "script: must start with #!ipxe")
	}
	return b, errs
}

func validRef(s string) bool {
	if u, err := url.Parse(s); err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" {
		return true
	}
	return fs.ValidPath(s) && s != "."
}

// Catalog is a validated set of bootenvs. Treat the Bootenvs it returns as read-only.
type Catalog struct {
	byName map[string]*Bootenv
	names  []string
}

// Required bootenvs: every machine starts in discovery, and completion flips it to local.
const (
	Discovery = "discovery"
	Local     = "local"
)

// NewCatalog checks bootenvs as a set: unique names, and discovery and local present.
func NewCatalog(envs ...Bootenv) (*Catalog, error) {
	c := &Catalog{byName: map[string]*Bootenv{}}
	var errs errorList
	for i := range envs {
		b := envs[i]
		if prev, dup := c.byName[b.Name]; dup {
			file, line := splitSource(b.Source)
			what := "duplicate bootenv (first declared at " + prev.Source + ")"
			if prev.Builtin {
				what = "duplicate bootenv (a built-in bootenv has this name)"
			}
			errs.add(file, line, b.Name, "%s", what)
			continue
		}
		c.byName[b.Name] = &b
		c.names = append(c.names, b.Name)
	}
	for _, req := range []string{Discovery, Local} {
		if _, ok := c.byName[req]; !ok {
			errs = append(errs, fmt.Errorf("bootenv %q is required", req))
		}
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	sort.Strings(c.names)
	return c, nil
}

func splitSource(s string) (string, int) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return s, 0
	}
	var n int
	fmt.Sscan(s[i+1:], &n)
	return s[:i], n
}

// Get returns the bootenv called name.
func (c *Catalog) Get(name string) (*Bootenv, bool) {
	b, ok := c.byName[name]
	return b, ok
}

// Names returns every bootenv name, sorted.
func (c *Catalog) Names() []string { return slices.Clone(c.names) }

// All returns every bootenv, sorted by name.
func (c *Catalog) All() []*Bootenv {
	out := make([]*Bootenv, 0, len(c.names))
	for _, n := range c.names {
		out = append(out, c.byName[n])
	}
	return out
}

//go:embed builtin/*.yaml
var builtinFS embed.FS

var builtins = sync.OnceValues(func() ([]Bootenv, error) {
	var all []Bootenv
	err := fs.WalkDir(builtinFS, "builtin", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := builtinFS.ReadFile(p)
		if err != nil {
			return err
		}
		envs, err := Parse(p, data)
		for i := range envs {
			envs[i].Builtin = true
		}
		all = append(all, envs...)
		return err
	})
	return all, err
})

// Builtins returns the bootenvs shipped with Prybar. It panics if the embedded files are invalid,
// which a test rules out.
func Builtins() []Bootenv {
	b, err := builtins()
	if err != nil {
		panic("ipxe: built-in bootenvs: " + err.Error())
	}
	return slices.Clone(b)
}

// ReadDir parses the built-ins plus every *.yaml/*.yml file of dir (lexical order) and validates
// them as one catalogue; a file that redefines a built-in is refused. Errors name file:line.
func ReadDir(dir string) (*Catalog, error) {
	envs := Builtins()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, e := range entries {
		if e.IsDir() || (path.Ext(e.Name()) != ".yaml" && path.Ext(e.Name()) != ".yml") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		got, err := Parse(p, data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		envs = append(envs, got...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return NewCatalog(envs...)
}

// BuiltinCatalog is the catalogue of the built-ins alone.
func BuiltinCatalog() *Catalog {
	c, err := NewCatalog(Builtins()...)
	if err != nil {
		panic("ipxe: built-in bootenvs: " + err.Error())
	}
	return c
}

func parseTemplate(name, text string) (*template.Template, error) {
	return template.New(name).Funcs(funcs).Option("missingkey=error").Parse(text)
}
