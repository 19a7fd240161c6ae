package scheduler

import (
	"context"
	"reflect"
	"sort"
	"strings"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/attribute"
	"github.com/prybar/prybar/internal/domain"
)

// The attribute catalogue.
//
// The source of truth for attributes is the role catalogue: each role's `attributes` JSON schema
// (built-in YAML or `prybar roles load`). The Attribute table is a projection of it, one row per
// property the schema declares, named "role:/path" (the syntax of `wants`). It is rebuilt in the
// same transaction as the roles whenever they load, only rows that differ are written, and
// nothing else writes it — so it can never disagree with the roles, and the API can page, filter
// and order it like any other record.

// AttributeName is the catalogue name of the attribute at pointer (a JSON pointer) of role.
func AttributeName(role, pointer string) string { return role + ":" + pointer }

// SplitAttributeName splits a catalogue name into role and JSON pointer.
func SplitAttributeName(name string) (role, pointer string) {
	role, pointer, _ = strings.Cut(name, ":")
	return role, pointer
}

// attrEntry is one declared property of a role's schema.
type attrEntry struct {
	pointer     string
	description string
	schema      map[string]any
	def         map[string]any // {"value": …} or nil
}

// declaredAttributes lists every property the schema declares, depth first in name order: the
// objects under "properties", recursively (array items and pattern properties are part of their
// parent's schema, not separate attributes).
func declaredAttributes(schema map[string]any) []attrEntry {
	var out []attrEntry
	var walk func(s map[string]any, prefix string)
	walk = func(s map[string]any, prefix string) {
		props, _ := s["properties"].(map[string]any)
		names := make([]string, 0, len(props))
		for k := range props {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			ps, _ := props[k].(map[string]any)
			if ps == nil {
				ps = map[string]any{}
			}
			p := prefix + "/" + strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
			e := attrEntry{pointer: p, schema: ps}
			e.description, _ = ps["description"].(string)
			if d, ok := ps["default"]; ok {
				e.def = map[string]any{"value": d}
			}
			out = append(out, e)
			walk(ps, p)
		}
	}
	if schema != nil {
		walk(schema, "")
	}
	return out
}

// declaredPath reports whether the schema declares the property at parts: each segment is a
// property under "properties", or lies under an object whose "additionalProperties" is a schema
// (an explicitly open map). JSON Schema's implicit "anything else is allowed" does not count:
// an undeclared key is almost always a typo that no executor reads.
func declaredPath(schema map[string]any, parts []string) bool {
	s := schema
	for _, p := range parts {
		if s == nil {
			return false
		}
		if props, ok := s["properties"].(map[string]any); ok {
			if ps, ok := props[p]; ok {
				s, _ = ps.(map[string]any)
				if s == nil {
					s = map[string]any{} // "true" schema: declared, anything below
				}
				continue
			}
		}
		if ap, ok := s["additionalProperties"].(map[string]any); ok {
			s = ap
			continue
		}
		return false
	}
	return true
}

// checkDeclared refuses setting a value at a path the role's schema does not declare. Removing a
// value (nil) is always allowed, so data written before a schema changed can be cleaned up.
func checkDeclared(ri *roleInfo, parts []string, path string, value any) error {
	if value == nil || declaredPath(ri.Schema, parts) {
		return nil
	}
	known := declaredAttributes(ri.Schema)
	names := make([]string, 0, len(known))
	for _, e := range known {
		names = append(names, e.pointer)
	}
	hint := "it declares no attributes"
	if len(names) > 0 {
		hint = "it declares " + strings.Join(names, ", ")
	}
	return domain.Errorf("path", domain.Invalid, "role %q declares no attribute %s (%s)", ri.Name, path, hint)
}

// syncAttributes makes the Attribute rows of role match its schema, writing only differences.
func syncAttributes(ctx context.Context, tx *ent.Tx, role string, schema map[string]any) error {
	cur, err := tx.Attribute.Query().Where(attribute.Role(role)).All(ctx)
	if err != nil {
		return err
	}
	have := make(map[string]*ent.Attribute, len(cur))
	for _, a := range cur {
		have[a.Name] = a
	}
	for _, e := range declaredAttributes(jsonRoundTripMap(schema)) {
		name := AttributeName(role, e.pointer)
		a, ok := have[name]
		delete(have, name)
		if ok && a.Description == e.description && reflect.DeepEqual(nilIfEmpty(a.Schema), nilIfEmpty(e.schema)) &&
			reflect.DeepEqual(nilIfEmpty(a.Default), nilIfEmpty(e.def)) {
			continue
		}
		if ok {
			u := tx.Attribute.UpdateOne(a).SetDescription(e.description).SetSchema(e.schema)
			if e.def != nil {
				u.SetDefault(e.def)
			} else {
				u.ClearDefault()
			}
			err = u.Exec(ctx)
		} else {
			c := tx.Attribute.Create().SetName(name).SetRole(role).SetDescription(e.description).
				SetSchema(e.schema).SetLayer(attribute.LayerROLE)
			if e.def != nil {
				c.SetDefault(e.def)
			}
			err = c.Exec(ctx)
		}
		if err != nil {
			return err
		}
	}
	for _, gone := range have {
		if err := tx.Attribute.DeleteOne(gone).Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

func jsonRoundTripMap(m map[string]any) map[string]any {
	out, _ := jsonRoundTrip(m).(map[string]any)
	return out
}

func nilIfEmpty(m map[string]any) map[string]any {
	if len(m) == 0 {
		return nil
	}
	return m
}
