package events

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// marshalChanges is json.Marshal(changes), byte for byte. Most events (the DHCP server's lease
// events above all) carry a handful of strings and numbers; for those it writes the object
// directly, without the reflection, per-key allocations and key sorting of encoding/json's map
// encoder. Anything else (nested values, slices, times …) goes through json.Marshal.
func marshalChanges(changes map[string]any) ([]byte, error) {
	if changes == nil {
		return []byte("null"), nil
	}
	var keyBuf [16]string
	keys := keyBuf[:0]
	size := 2
	for k, v := range changes {
		switch v := v.(type) {
		case string:
			size += len(v) + 4
		case int, int64, float64, bool, nil:
			size += 24
		default:
			return json.Marshal(changes)
		}
		keys = append(keys, k)
		size += len(k) + 4
	}
	slices.Sort(keys)
	b := make([]byte, 0, size)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		switch v := changes[k].(type) {
		case string:
			b = appendJSONString(b, v)
		case int:
			b = strconv.AppendInt(b, int64(v), 10)
		case int64:
			b = strconv.AppendInt(b, v, 10)
		case bool:
			b = strconv.AppendBool(b, v)
		case nil:
			b = append(b, "null"...)
		case float64:
			if math.IsInf(v, 0) || math.IsNaN(v) || v != math.Trunc(v) || math.Abs(v) >= 1e21 {
				return json.Marshal(changes) // json's float formatting and errors, not repeated here
			}
			b = strconv.AppendFloat(b, v, 'f', -1, 64)
		}
	}
	return append(b, '}'), nil
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s quoted as encoding/json does by default: HTML-safe (<, >, & as
// \u003c …), U+2028 and U+2029 escaped, invalid UTF-8 as U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += n
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += n
			start = i
			continue
		}
		i += n
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
