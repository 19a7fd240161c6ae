package events

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

// marshalChanges must store exactly what json.Marshal would: readers decode either, but the
// bytes in the table should not depend on which path wrote them.
func TestMarshalChangesMatchesEncodingJSON(t *testing.T) {
	cases := []map[string]any{
		nil,
		{},
		{"mac": "52:54:00:12:34:56", "address": "10.0.0.5", "expires": "2026-12-02T08:00:00Z", "trace": "0123abcd"},
		{"quote\"key": "a\\b\"c", "ctl": "\x00\x01\x1f\t\n\r\b\f", "html": "<a href='x'>&amp;</a>", "seps": "\u2028\u2029", "bad": "\xff\xfe ok \xc3"},
		{"n": 42, "neg": int64(-7), "f": 3.0, "frac": 0.25, "big": 1e21, "tiny": 1e-7, "t": true, "f0": false, "nil": nil},
		{"uni": "héllo wörld ✓ 🙂", "empty": ""},
		{"nested": map[string]any{"a": 1}, "s": "x"},
		{"time": time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), "list": []string{"a"}},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 500; i++ {
		m := map[string]any{}
		for j := 0; j < rng.IntN(8); j++ {
			b := make([]byte, rng.IntN(12))
			for k := range b {
				b[k] = byte(rng.IntN(256))
			}
			switch rng.IntN(3) {
			case 0:
				m[string(b)] = string(b)
			case 1:
				m[string(b)] = rng.IntN(1000) - 500
			default:
				m[string(b)] = float64(rng.IntN(1000)) / 8
			}
		}
		cases = append(cases, m)
	}
	for _, c := range cases {
		want, err1 := json.Marshal(c)
		got, err2 := marshalChanges(c)
		if (err1 == nil) != (err2 == nil) || string(got) != string(want) {
			t.Errorf("%#v:\n got %s (%v)\nwant %s (%v)", c, got, err2, want, err1)
		}
	}
}
