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
func Errorf(field string, code Code, format string, args ...any) *Error {
	return &Error{Field: field, Code: code, Message: fmt.Sprintf(format, args...)}
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
		return &Error{Field: GraphQLName(ve.Name), Code: Invalid, Message: cleanEntMessage(ve.Unwrap().Error())}, true
	}
	var nf *ent.NotFoundError
	if errors.As(err, &nf) {
		return &Error{Field: "id", Code: NotFound, Message: nf.Error()}, true
	}
	var ce *ent.ConstraintError
	if errors.As(err, &ce) {
		return fromConstraint(ce), true
	}
	return nil, false
}

var (
	// SQLite: "UNIQUE constraint failed: nics.mac"; PostgreSQL: `... unique constraint "nics_mac_key"`
	// and `Key (mac)=(…) already exists`.
	sqliteUnique = regexp.MustCompile(`UNIQUE constraint failed: [a-z_]+\.([a-z_]+)`)
	pgKey        = regexp.MustCompile(`Key \(([a-z_]+)(?:, ([a-z_]+))*\)`)
	pgUniqueName = regexp.MustCompile(`unique constraint "[a-z_]+?_([a-z_]+)_key"`)
)

func fromConstraint(ce *ent.ConstraintError) *Error {
	msg := ce.Error()
	lower := strings.ToLower(msg)
	if strings.Contains(lower, "foreign key") {
		return &Error{Field: "id", Code: Conflict, Message: "a referenced record does not exist or is still in use"}
	}
	field := ""
	for _, re := range []*regexp.Regexp{sqliteUnique, pgKey, pgUniqueName} {
		if m := re.FindStringSubmatch(msg); m != nil {
			// For composite keys the last column is the one the caller chose (e.g. address within a network).
			field = m[1]
			for _, g := range m[2:] {
				if g != "" {
					field = g
				}
			}
			break
		}
	}
	if all := sqliteUnique.FindAllStringSubmatch(msg, -1); len(all) > 1 {
		field = all[len(all)-1][1]
	}
	return &Error{Field: GraphQLName(field), Code: Duplicate, Message: "value is already in use"}
}

func cleanEntMessage(s string) string {
	return strings.TrimPrefix(s, "value does not match validation: ")
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
