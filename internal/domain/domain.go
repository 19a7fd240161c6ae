// Package domain defines the typed errors that mutations return to API clients instead of
// top-level GraphQL errors: each names the input field at fault, a stable code and a message.
// It also translates ent's validation, constraint and not-found errors into that form.
package domain

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/prybar/prybar/ent"
)

// Code classifies a domain error; clients switch on it.
type Code string

// The codes. They are API: add, never rename.
const (
	Invalid           Code = "INVALID"
	Duplicate         Code = "DUPLICATE"
	NotFound          Code = "NOT_FOUND"
	Conflict          Code = "CONFLICT"
	OutOfRange        Code = "OUT_OF_RANGE"
	Overlap           Code = "OVERLAP"
	IllegalTransition Code = "ILLEGAL_TRANSITION"
	Cycle             Code = "CYCLE"
	Unavailable       Code = "UNAVAILABLE"
)

var codes = []Code{Invalid, Duplicate, NotFound, Conflict, OutOfRange, Overlap, IllegalTransition, Cycle, Unavailable}

// MarshalGQL writes the code as a GraphQL enum value.
func (c Code) MarshalGQL(w io.Writer) { io.WriteString(w, strconv.Quote(string(c))) }

// UnmarshalGQL reads a GraphQL enum value.
func (c *Code) UnmarshalGQL(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("error code must be a string")
	}
	for _, k := range codes {
		if string(k) == s {
			*c = k
			return nil
		}
	}
	return fmt.Errorf("%q is not a valid ErrorCode", s)
}

// Error is a domain error: input that the domain refuses, reported to the client as data.
type Error struct {
	Field   string `json:"field"`
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// Errorf builds a domain error for field (the GraphQL input field name, camelCase).
// A Go-style "machineId" is corrected to the GraphQL argument's spelling "machineID".
func Errorf(field string, code Code, format string, args ...any) *Error {
	return &Error{Field: FieldName(field), Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldName spells a field as the GraphQL API does: entgql names references "…ID", never "…Id".
func FieldName(f string) string {
	if strings.HasSuffix(f, "Id") {
		return f[:len(f)-2] + "ID"
	}
	if strings.HasSuffix(f, "Ids") {
		return f[:len(f)-3] + "IDs"
	}
	return f
}

// As converts err to a domain error when it is one, or when it is an ent error that describes bad
// input (validation, constraint, not found). Other errors (I/O, bugs) return false: they are
// internal and surface as top-level GraphQL errors.
func As(err error) (*Error, bool) {
	if err == nil {
		return nil, false
	}
	var de *Error
	if errors.As(err, &de) {
		return de, true
	}
	var ve *ent.ValidationError
	if errors.As(err, &ve) {
		return fromValidation(ve), true
	}
	var nf *ent.NotFoundError
	if errors.As(err, &nf) {
		// ent says "ent: machine not found"; keep the type, drop the ORM's prefix.
		what := strings.TrimSuffix(strings.TrimPrefix(nf.Error(), "ent: "), " not found")
		return &Error{Field: "id", Code: NotFound, Message: fmt.Sprintf("no %s with this id", what)}, true
	}
	var ce *ent.ConstraintError
	if errors.As(err, &ce) {
		return fromConstraint(ce), true
	}
	if de := fromNotNull(err.Error()); de != nil {
		return de, true
	}
	return nil, false
}

var (
	// SQLite: "UNIQUE constraint failed: racks.site_id, racks.name"; PostgreSQL:
	// `... unique constraint "nics_mac_key"` and `Key (site_id, name)=(…) already exists`.
	sqliteUnique = regexp.MustCompile(`UNIQUE constraint failed: ((?:[a-z_]+\.[a-z_]+(?:, )?)+)`)
	pgKey        = regexp.MustCompile(`Key \(([a-z_, ]+)\)`)
	pgUniqueName = regexp.MustCompile(`unique constraint "[a-z_]+?_([a-z_]+)_key"`)
	// NOT NULL: SQLite "NOT NULL constraint failed: nics.machine_id"; PostgreSQL `null value in
	// column "machine_id" … violates not-null constraint`.
	sqliteNotNull = regexp.MustCompile(`NOT NULL constraint failed: [a-z_]+\.([a-z_]+)`)
	pgNotNull     = regexp.MustCompile(`column "([a-z_]+)".*violates not-null constraint`)
)

func fromConstraint(ce *ent.ConstraintError) *Error {
	msg := ce.Error()
	if de := fromNotNull(msg); de != nil {
		return de
	}
	lower := strings.ToLower(msg)
	if strings.Contains(lower, "foreign key") {
		return &Error{Field: "id", Code: Conflict, Message: "a referenced record does not exist or is still in use"}
	}
	field := ""
	if m := sqliteUnique.FindStringSubmatch(msg); m != nil {
		field = lastColumn(m[1])
	} else if m := pgKey.FindStringSubmatch(msg); m != nil {
		field = lastColumn(m[1])
	} else if m := pgUniqueName.FindStringSubmatch(msg); m != nil {
		field = m[1]
	}
	return &Error{Field: GraphQLName(field), Code: Duplicate, Message: "value is already in use"}
}

// lastColumn picks, of a composite key, the column the caller chose (a rack's name within its
// site, an address within its network): by convention the last one.
func lastColumn(cols string) string {
	parts := strings.Split(cols, ",")
	c := strings.TrimSpace(parts[len(parts)-1])
	if i := strings.LastIndexByte(c, '.'); i >= 0 {
		c = c[i+1:]
	}
	return c
}

// fromNotNull reports a NOT NULL violation (a required reference removed) as a domain error; the
// inventory hooks refuse such writes first, this is the backstop for any writer they miss.
func fromNotNull(msg string) *Error {
	for _, re := range []*regexp.Regexp{sqliteNotNull, pgNotNull} {
		if m := re.FindStringSubmatch(msg); m != nil {
			return &Error{Field: GraphQLName(m[1]), Code: Invalid, Message: "is required and cannot be removed"}
		}
	}
	return nil
}

// fromValidation turns an ent validator error into a message a person can act on. ent wraps the
// validator's own error as `ent: validator failed for field "Type.field": …`; a validator that
// returns a domain error keeps it, the built-in validators' terse texts are rewritten.
func fromValidation(ve *ent.ValidationError) *Error {
	field := GraphQLName(ve.Name)
	wrapped := ve.Unwrap()
	inner := errors.Unwrap(wrapped)
	if inner == nil {
		inner = wrapped
	}
	var de *Error
	if errors.As(inner, &de) {
		out := *de
		if out.Field == "" {
			out.Field = field
		}
		return &out
	}
	msg := inner.Error()
	code := Invalid
	switch {
	case strings.Contains(msg, "missing required field"), strings.Contains(msg, "missing required edge"):
		msg = "is required"
	case strings.Contains(msg, "invalid enum value"):
		msg = "is not one of the allowed values"
	case msg == "value does not match validation":
		msg = "has an invalid format"
	case strings.HasPrefix(msg, "value is less than the required"):
		msg = "must not be empty"
	case strings.HasPrefix(msg, "value is greater than the required"):
		msg = "is too long"
	case msg == "value out of range":
		msg, code = "is out of range", OutOfRange
	default:
		msg = Clean(msg)
	}
	return &Error{Field: field, Code: code, Message: msg}
}

// Clean strips the ORM's and the SQL driver's vocabulary from a message that has no better
// translation, so no client ever sees "ent:" or "sql:" prefixes.
func Clean(s string) string {
	for _, p := range []string{"value does not match validation: ", "ent: ", "sql: "} {
		s = strings.ReplaceAll(s, p, "")
	}
	return s
}

// GraphQLName turns a schema field name (snake_case) into its GraphQL name (lowerCamel, with
// entgql's "ID" suffix).
func GraphQLName(s string) string {
	parts := strings.Split(s, "_")
	for i := 1; i < len(parts); i++ {
		switch parts[i] {
		case "id":
			parts[i] = "ID"
		case "":
		default:
			parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
		}
	}
	return strings.Join(parts, "")
}
