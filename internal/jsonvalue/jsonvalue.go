// Package jsonvalue holds helpers for values decoded from JSON or YAML into Go's generic shapes
// (map[string]any, []any, and scalars), which attributes, role schemas and Redfish resources all
// are.
package jsonvalue

// Copy returns a deep copy of v: maps and slices are copied all the way down, scalars (strings,
// numbers, bools, nil) are values already.
func Copy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = Copy(x)
		}
		return m
	case []any:
		s := make([]any, len(v))
		for i, x := range v {
			s[i] = Copy(x)
		}
		return s
	}
	return v
}
