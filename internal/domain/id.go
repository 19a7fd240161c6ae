package domain

import (
	"encoding/json"
	"io"
	"math"
	"strconv"

	"github.com/99designs/gqlgen/graphql"
)

// MarshalID writes an id as a GraphQL ID (a JSON string).
func MarshalID(id int) graphql.Marshaler {
	return graphql.WriterFunc(func(w io.Writer) { io.WriteString(w, strconv.Quote(strconv.Itoa(id))) })
}

// UnmarshalID reads a GraphQL ID. Ids are positive integers, sent as a string or a number; anything
// else is an INVALID domain error (gqlgen's own parser answered with strconv's text). The field
// is left empty: the API's error presenter names the argument from the error's path.
func UnmarshalID(v any) (int, error) {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case json.Number:
		s = x.String()
	case int:
		s = strconv.Itoa(x)
	case int64:
		s = strconv.FormatInt(x, 10)
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			s = strconv.FormatInt(int64(x), 10)
		} else {
			s = strconv.FormatFloat(x, 'g', -1, 64)
		}
	default:
		return 0, Errorf("", Invalid, "an id must be a string or a number, not %T", v)
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, Errorf("", Invalid, "%s is not an id (ids are positive integers)", quoteShort(s))
	}
	return int(id), nil
}

// quoteShort quotes s for a message, cut to a readable length.
func quoteShort(s string) string {
	const max = 40
	if len(s) > max {
		s = s[:max] + "…"
	}
	return strconv.Quote(s)
}
