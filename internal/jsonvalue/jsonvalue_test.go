package jsonvalue

import "testing"

// A copy shares nothing mutable with its original.
func TestCopy(t *testing.T) {
	orig := map[string]any{"a": []any{map[string]any{"b": 1.0}, "s"}, "n": nil}
	c := Copy(orig).(map[string]any)
	c["a"].([]any)[0].(map[string]any)["b"] = 2.0
	c["a"].([]any)[1] = "t"
	c["x"] = true
	if orig["a"].([]any)[0].(map[string]any)["b"] != 1.0 || orig["a"].([]any)[1] != "s" || len(orig) != 2 {
		t.Errorf("the original changed: %v", orig)
	}
}
