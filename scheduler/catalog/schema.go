package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/prybar/prybar/internal/jsonvalue"
)

// prepare checks one role on its own and compiles its schema and defaults.
func (r *Role) prepare() errorList {
	var errs errorList
	bad := func(field string, format string, args ...any) {
		errs.add(r.at(field), r.Name, format, args...)
	}
	if !validName(r.Name) {
		if r.Name == "" {
			bad("name", "name is required")
		} else {
			bad("name", "name %q must match [a-z0-9-]+", r.Name)
		}
	}
	if strings.TrimSpace(r.Executor) == "" {
		bad("executor", "executor is required")
	}
	for _, list := range []struct {
		field string
		items []string
	}{{"requires", r.Requires}, {"provides", r.Provides}, {"conflicts", r.Conflicts}} {
		seen := map[string]bool{}
		for i, s := range list.items {
			at := fmt.Sprintf("%s/%d", list.field, i)
			if !validName(s) {
				bad(at, "%s: %q must match [a-z0-9-]+", list.field, s)
			}
			if seen[s] {
				bad(at, "%s: %q listed twice", list.field, s)
			}
			seen[s] = true
		}
	}
	for i, w := range r.Wants {
		if _, err := ParseWant(w.String()); err != nil || w.Path == "" {
			bad(fmt.Sprintf("wants/%d", i), "bad want %q", w.String())
		}
	}
	if r.Retry.Attempts < 0 {
		bad("retry/attempts", "retry: attempts must not be negative")
	}
	if r.Retry.Initial < 0 || r.Retry.Max < 0 || r.Timeout < 0 {
		bad("retry", "durations must not be negative")
	}
	if r.Retry.Max > 0 && r.Retry.Max < r.Retry.Initial {
		bad("retry/max_backoff", "retry: max_backoff %v is below backoff %v", r.Retry.Max, r.Retry.Initial)
	}

	r.schema, r.defaults = nil, nil
	if r.Attributes == nil {
		return errs
	}
	// Roles built in Go may hold []string, int, structs …; the validator
	// and Defaults want encoding/json's shapes, and the caller's map must not
	// be shared.
	norm, err := jsonCopy(r.Attributes)
	if err != nil {
		bad("attributes", "attributes: %v", err)
		return errs
	}
	r.Attributes = norm.(map[string]any)
	if t, ok := r.Attributes["type"]; ok && t != "object" {
		bad("attributes/type", "attributes: schema type must be object, not %v", t)
		return errs
	}
	sch, err := r.compile("")
	if err != nil {
		errs = append(errs, r.schemaError(err))
		return errs
	}
	r.schema = sch
	var found []defaultAt
	r.defaults = collectDefaults(r.Attributes, "", &found)
	for _, d := range found {
		sub, err := r.compile(d.ptr)
		if err != nil {
			errs = append(errs, r.schemaError(err))
			continue
		}
		if err := sub.Validate(d.value); err != nil {
			ps := problems(err, "")
			msgs := make([]string, len(ps))
			for i, p := range ps {
				msgs[i] = p.Message
				if p.Path != "/" {
					msgs[i] = p.Path + ": " + p.Message
				}
			}
			bad("attributes"+d.ptr+"/default", "attributes: default of %s does not match its schema: %s",
				propertyPath(d.ptr), strings.Join(msgs, "; "))
		}
	}
	return errs
}

// schemaURL names a role's schema for the validator. The host is reserved
// (.invalid) and no loader is installed, so a $ref can only point inside
// the role's own schema; nothing is fetched.
func (r *Role) schemaURL() string { return "https://prybar.invalid/roles/" + r.Name + ".json" }

func (r *Role) compile(ptr string) (*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	// Formats are annotations only in draft 2020-12; an operator writing
	// format: ipv4 expects it enforced.
	c.AssertFormat()
	c.RegisterFormat(&jsonschema.Format{Name: "duration", Validate: validateDuration})
	c.UseLoader(noLoader{})
	if err := c.AddResource(r.schemaURL(), r.Attributes); err != nil {
		return nil, err
	}
	loc := r.schemaURL()
	if ptr != "" {
		loc += "#" + (&url.URL{Fragment: ptr}).EscapedFragment()
	}
	return c.Compile(loc)
}

type noLoader struct{}

func (noLoader) Load(u string) (any, error) {
	return nil, fmt.Errorf("external $ref %s not allowed: a role's schema must be self-contained", u)
}

func validateDuration(v any) error {
	s, ok := v.(string)
	if !ok {
		return nil // format applies to strings only
	}
	if _, err := time.ParseDuration(s); err != nil {
		return errors.New("want e.g. 30s, 5m")
	}
	return nil
}

var fragmentRE = regexp.MustCompile(`\.json#(/[^'" ]*)`)

// schemaError turns a compile error into an *Error at the line of the
// offending schema keyword.
func (r *Role) schemaError(err error) *Error {
	var sve *jsonschema.SchemaValidationError
	if errors.As(err, &sve) {
		var ve *jsonschema.ValidationError
		if errors.As(sve.Err, &ve) {
			ps := problems(ve, "")
			if len(ps) > 0 {
				p := ps[0]
				return &Error{Pos: r.at(strings.TrimSuffix("attributes"+p.Path, "/")), Role: r.Name,
					Err: fmt.Errorf("invalid attribute schema at %s: %s", p.Path, p.Message)}
			}
		}
	}
	msg := strings.ReplaceAll(err.Error(), r.schemaURL(), "schema")
	pos := r.at("attributes")
	if m := fragmentRE.FindStringSubmatch(err.Error()); m != nil {
		if u, uerr := url.Parse("x:#" + m[1]); uerr == nil {
			pos = r.at("attributes" + u.Fragment)
		}
	}
	return &Error{Pos: pos, Role: r.Name, Err: fmt.Errorf("invalid attribute schema: %s", msg)}
}

type defaultAt struct {
	ptr   string // JSON pointer of the property's subschema
	value any
}

// collectDefaults builds the default attribute object from the schema's
// property defaults, descending into object properties. An explicit object
// default wins; nested defaults fill the keys it leaves out.
func collectDefaults(schema map[string]any, ptr string, found *[]defaultAt) map[string]any {
	props, _ := schema["properties"].(map[string]any)
	out := map[string]any{}
	for _, k := range slices.Sorted(maps.Keys(props)) {
		sub, ok := props[k].(map[string]any)
		if !ok {
			continue
		}
		sptr := ptr + "/properties/" + escapePointer(k)
		var val any
		has := false
		if d, ok := sub["default"]; ok {
			*found = append(*found, defaultAt{sptr, d})
			val, has = jsonvalue.Copy(d), true
		}
		if nested := collectDefaults(sub, sptr, found); len(nested) > 0 {
			switch v := val.(type) {
			case nil:
				if !has {
					val, has = nested, true
				}
			case map[string]any:
				for nk, nv := range nested {
					if _, ok := v[nk]; !ok {
						v[nk] = nv
					}
				}
			}
		}
		if has {
			out[k] = val
		}
	}
	return out
}

// propertyPath turns a schema pointer (/properties/disk/properties/size)
// into the attribute path it describes (/disk/size).
func propertyPath(ptr string) string {
	return strings.ReplaceAll(ptr, "/properties/", "/")
}

// Defaults returns the role's default attributes, built from the "default"
// of each property in its schema, nested objects included. The result is a
// fresh copy. Defaults reached only through $ref, allOf and the like are not
// collected.
func (r *Role) Defaults() map[string]any {
	if r.defaults == nil && r.Attributes != nil && r.schema == nil {
		// A Role built in Go and never put in a Catalog.
		var found []defaultAt
		return collectDefaults(r.Attributes, "", &found)
	}
	if r.defaults == nil {
		return map[string]any{}
	}
	return jsonvalue.Copy(r.defaults).(map[string]any)
}

// Problem is one reason attributes fail their schema.
type Problem struct {
	Path    string // JSON pointer into the attributes, "/" for the whole object
	Message string
}

// AttributeError reports attributes that do not match a role's schema.
type AttributeError struct {
	Role     string
	Problems []Problem
}

func (e *AttributeError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Path + ": " + p.Message
	}
	return fmt.Sprintf("role %q: invalid attributes: %s", e.Role, strings.Join(parts, "; "))
}

// Validate checks attributes against the role's schema and returns an
// *AttributeError naming each failing path, e.g. "/disk/size: expected
// integer, got string". It does not apply defaults first: validate the
// layered result (defaults ⊕ deployment ⊕ node-role data) when "required"
// should count defaults. A role without a schema accepts anything.
func (r *Role) Validate(attrs map[string]any) error {
	sch := r.schema
	if sch == nil {
		if r.Attributes == nil {
			return nil
		}
		// A Role built in Go and never put in a Catalog: compile now.
		cp := *r
		if errs := cp.prepare(); len(errs) > 0 {
			return errs.err()
		}
		sch = cp.schema
	}
	var v any = map[string]any{}
	if attrs != nil {
		var err error
		if v, err = jsonNumberCopy(attrs); err != nil {
			return &AttributeError{Role: r.Name, Problems: []Problem{{"/", err.Error()}}}
		}
	}
	if err := sch.Validate(v); err != nil {
		var ve *jsonschema.ValidationError
		if !errors.As(err, &ve) {
			return fmt.Errorf("role %q: validate attributes: %w", r.Name, err)
		}
		return &AttributeError{Role: r.Name, Problems: problems(ve, "")}
	}
	return nil
}

var printer = message.NewPrinter(language.English)

// problems flattens a validation error tree into its leaves, one per
// instance path: the first leaf at a path is the most specific (for anyOf the
// validator lists alternatives, and the rest only add noise).
func problems(err error, prefix string) []Problem {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []Problem{{"/", err.Error()}}
	}
	var out []Problem
	seen := map[string]bool{}
	addP := func(p Problem) {
		if !seen[p.Path] {
			seen[p.Path] = true
			out = append(out, p)
		}
	}
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		base := prefix + pointer(e.InstanceLocation)
		switch k := e.ErrorKind.(type) {
		case *kind.Type:
			addP(Problem{orRoot(base), fmt.Sprintf("expected %s, got %s", strings.Join(k.Want, " or "), k.Got)})
		case *kind.Required:
			for _, m := range k.Missing {
				addP(Problem{base + "/" + escapePointer(m), "required"})
			}
		case *kind.AdditionalProperties:
			for _, p := range k.Properties {
				addP(Problem{base + "/" + escapePointer(p), "unknown attribute"})
			}
		case *kind.FalseSchema:
			addP(Problem{orRoot(base), "not allowed"})
		default:
			addP(Problem{orRoot(base), e.ErrorKind.LocalizedString(printer)})
		}
	}
	walk(ve)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func pointer(loc []string) string {
	var b strings.Builder
	for _, s := range loc {
		b.WriteByte('/')
		b.WriteString(escapePointer(s))
	}
	return b.String()
}

func orRoot(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

// jsonCopy round-trips v through encoding/json: the shapes a schema and a
// stored attribute blob have.
func jsonCopy(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	return out, json.Unmarshal(b, &out)
}

// jsonNumberCopy is jsonCopy keeping numbers as json.Number, so the validator
// judges integers exactly.
func jsonNumberCopy(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(b))
}
