package catalog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

var nameRE = regexp.MustCompile(`^[a-z0-9-]+$`)

func validName(s string) bool { return nameRE.MatchString(s) }

// Parse reads the roles of one YAML file. name is only used in error
// messages ("roles/x.yaml:12: …"). Each role is checked on its own (fields,
// schema, defaults); checks across roles happen in New.
func Parse(name string, data []byte) ([]Role, error) {
	var roles []Role
	var errs errorList
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// yaml.v3 puts "line N" in its own messages.
			errs.add(Pos{File: name}, "", "%v", err)
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
			errs.add(Pos{name, top.Line}, "", "expected a mapping with a roles: list")
			continue
		}
		for i := 0; i+1 < len(top.Content); i += 2 {
			k, v := top.Content[i], resolve(top.Content[i+1])
			if k.Value != "roles" {
				errs.add(Pos{name, k.Line}, "", "unknown top-level field %q (want roles)", k.Value)
				continue
			}
			if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
				continue
			}
			if v.Kind != yaml.SequenceNode {
				errs.add(Pos{name, v.Line}, "", "roles must be a list")
				continue
			}
			for _, item := range v.Content {
				r, rerrs := parseRole(name, resolve(item))
				errs = append(errs, rerrs...)
				if len(rerrs) == 0 {
					errs = append(errs, r.prepare()...)
				}
				roles = append(roles, r)
			}
		}
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return roles, nil
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func parseRole(file string, n *yaml.Node) (Role, errorList) {
	var errs errorList
	r := Role{Pos: Pos{file, n.Line}, lines: map[string]int{}}
	if n.Kind != yaml.MappingNode {
		errs.add(r.Pos, "", "a role must be a mapping")
		return r, errs
	}
	recordLines(n, "", r.lines)
	// The name first, so every other error can say which role it is about.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "name" {
			_ = resolve(n.Content[i+1]).Decode(&r.Name)
		}
	}
	bad := func(v *yaml.Node, format string, args ...any) {
		errs.add(Pos{file, v.Line}, r.Name, format, args...)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		if prev, dup := seen[k.Value]; dup {
			bad(k, "field %q repeated (first at line %d)", k.Value, prev)
			continue
		}
		seen[k.Value] = k.Line
		var err error
		switch k.Value {
		case "name":
			err = decodeScalar(v, &r.Name)
		case "description":
			err = decodeScalar(v, &r.Description)
		case "executor":
			err = decodeScalar(v, &r.Executor)
		case "requires":
			r.Requires, err = decodeStrings(v)
		case "provides":
			r.Provides, err = decodeStrings(v)
		case "conflicts":
			r.Conflicts, err = decodeStrings(v)
		case "wants":
			var ws []string
			ws, err = decodeStrings(v)
			for j, s := range ws {
				w, werr := ParseWant(s)
				if werr != nil {
					bad(v.Content[j], "%v", werr)
					continue
				}
				r.Wants = append(r.Wants, w)
			}
		case "flags":
			err = decodeMapping(v, func(key string, fv *yaml.Node) error {
				dst := map[string]*bool{"implicit": &r.Flags.Implicit, "cluster": &r.Flags.Cluster,
					"destructive": &r.Flags.Destructive, "discovery": &r.Flags.Discovery}[key]
				if dst == nil {
					return fmt.Errorf("unknown flag %q (want implicit, cluster, destructive, discovery)", key)
				}
				return decodeBool(fv, dst)
			})
		case "retry":
			err = decodeMapping(v, func(key string, fv *yaml.Node) error {
				switch key {
				case "attempts":
					return decodeInt(fv, &r.Retry.Attempts)
				case "backoff":
					return decodeDuration(fv, &r.Retry.Initial)
				case "max_backoff":
					return decodeDuration(fv, &r.Retry.Max)
				}
				return fmt.Errorf("unknown retry field %q (want attempts, backoff, max_backoff)", key)
			})
		case "timeout":
			err = decodeDuration(v, &r.Timeout)
		case "attributes":
			var doc any
			doc, err = nodeToJSON(v)
			if err == nil && doc != nil {
				m, ok := doc.(map[string]any)
				if !ok {
					err = errors.New("attributes must be a JSON Schema object")
				}
				r.Attributes = m
			}
		default:
			bad(k, "unknown field %q", k.Value)
			continue
		}
		if err != nil {
			var le *lineError
			if errors.As(err, &le) {
				bad(le.node, "%s: %v", k.Value, le.err)
			} else {
				bad(v, "%s: %v", k.Value, err)
			}
		}
	}
	return r, errs
}

// lineError carries the node a nested decoding error is about, so the line
// points at the offending item rather than at its parent field.
type lineError struct {
	node *yaml.Node
	err  error
}

func (e *lineError) Error() string { return e.err.Error() }

func decodeScalar(v *yaml.Node, dst *string) error {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		return errors.New("expected a string")
	}
	*dst = v.Value
	return nil
}

func decodeBool(v *yaml.Node, dst *bool) error {
	if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" {
		return &lineError{v, fmt.Errorf("expected true or false, got %q", v.Value)}
	}
	return v.Decode(dst)
}

func decodeInt(v *yaml.Node, dst *int) error {
	if v.Kind != yaml.ScalarNode || v.Tag != "!!int" {
		return &lineError{v, fmt.Errorf("expected an integer, got %q", v.Value)}
	}
	return v.Decode(dst)
}

func decodeDuration(v *yaml.Node, dst *time.Duration) error {
	var s string
	if err := decodeScalar(v, &s); err != nil {
		return &lineError{v, errors.New("expected a duration like 30s")}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		// A bare number is the likeliest slip: say which unit is missing.
		return &lineError{v, fmt.Errorf("bad duration %q (want e.g. 30s, 5m)", s)}
	}
	if d < 0 {
		return &lineError{v, fmt.Errorf("negative duration %q", s)}
	}
	*dst = d
	return nil
}

func decodeStrings(v *yaml.Node) ([]string, error) {
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return nil, nil
	}
	if v.Kind != yaml.SequenceNode {
		return nil, errors.New("expected a list of strings")
	}
	out := make([]string, 0, len(v.Content))
	for _, it := range v.Content {
		it = resolve(it)
		var s string
		if err := decodeScalar(it, &s); err != nil {
			return nil, &lineError{it, err}
		}
		out = append(out, s)
	}
	return out, nil
}

func decodeMapping(v *yaml.Node, field func(key string, v *yaml.Node) error) error {
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return nil
	}
	if v.Kind != yaml.MappingNode {
		return errors.New("expected a mapping")
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k := v.Content[i]
		if seen[k.Value] {
			return &lineError{k, fmt.Errorf("%q repeated", k.Value)}
		}
		seen[k.Value] = true
		if err := field(k.Value, resolve(v.Content[i+1])); err != nil {
			var le *lineError
			if errors.As(err, &le) {
				return err
			}
			return &lineError{k, err}
		}
	}
	return nil
}

// nodeToJSON converts YAML to the values encoding/json would produce, by tag:
// decoding into `any` would turn an unquoted date into a time.Time and allow
// non-string keys, neither of which JSON Schema can describe.
func nodeToJSON(n *yaml.Node) (any, error) {
	n = resolve(n)
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return nodeToJSON(n.Content[0])
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
				return nil, &lineError{k, errors.New("keys must be plain strings (no merge keys)")}
			}
			if _, dup := m[k.Value]; dup {
				return nil, &lineError{k, fmt.Errorf("key %q repeated", k.Value)}
			}
			v, err := nodeToJSON(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			m[k.Value] = v
		}
		return m, nil
	case yaml.SequenceNode:
		a := make([]any, 0, len(n.Content))
		for _, it := range n.Content {
			v, err := nodeToJSON(it)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		return a, nil
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return nil, nil
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err != nil {
				return nil, &lineError{n, err}
			}
			return b, nil
		case "!!int", "!!float":
			var f float64
			if err := n.Decode(&f); err != nil {
				return nil, &lineError{n, err}
			}
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, &lineError{n, fmt.Errorf("%s is not a JSON number", n.Value)}
			}
			return f, nil
		}
		return n.Value, nil
	}
	return nil, &lineError{n, fmt.Errorf("unsupported YAML node")}
}

// recordLines maps every path inside a role ("requires/1",
// "attributes/properties/size/default") to its line, so checks made long
// after parsing can still point at the right line.
func recordLines(n *yaml.Node, prefix string, lines map[string]int) {
	n = resolve(n)
	join := func(seg string) string {
		if prefix == "" {
			return seg
		}
		return prefix + "/" + seg
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := join(escapePointer(n.Content[i].Value))
			if _, ok := lines[p]; !ok {
				lines[p] = n.Content[i].Line
			}
			recordLines(n.Content[i+1], p, lines)
		}
	case yaml.SequenceNode:
		for i, it := range n.Content {
			p := join(strconv.Itoa(i))
			lines[p] = it.Line
			recordLines(it, p, lines)
		}
	}
}

func escapePointer(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

// LoadFS reads every *.yaml and *.yml file under dir in fsys (recursively, in
// lexical order) and builds a catalogue from them.
func LoadFS(fsys fs.FS, dir string) (*Catalog, error) {
	return loadFS(fsys, dir, "")
}

// LoadDir is LoadFS on the operating system's directory dir; errors name the
// files as dir/….
func LoadDir(dir string) (*Catalog, error) {
	return loadFS(os.DirFS(dir), ".", dir)
}

func loadFS(fsys fs.FS, dir, display string) (*Catalog, error) {
	var roles []Role
	var errs []error
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || (path.Ext(p) != ".yaml" && path.Ext(p) != ".yml") {
			return nil
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		name := p
		if display != "" {
			name = filepath.Join(display, filepath.FromSlash(p))
		}
		rs, err := Parse(name, data)
		if err != nil {
			errs = append(errs, err)
		}
		roles = append(roles, rs...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return New(roles...)
}
