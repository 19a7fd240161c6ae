package domain

import (
	"strings"
	"testing"
)

func TestGraphQLName(t *testing.T) {
	for in, want := range map[string]string{"mac": "mac", "u_position": "uPosition", "machine_id": "machineID", "": ""} {
		if got := GraphQLName(in); got != want {
			t.Errorf("GraphQLName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUnmarshalID(t *testing.T) {
	for in, want := range map[any]int{"42": 42, 7.0: 7, int64(9): 9} {
		if got, err := UnmarshalID(in); err != nil || got != want {
			t.Errorf("UnmarshalID(%v) = %d, %v", in, got, err)
		}
	}
	for _, in := range []any{"abc", "-1", "0", "1.5", 2.5, true, nil, "99999999999999999999999"} {
		_, err := UnmarshalID(in)
		de, ok := err.(*Error)
		if !ok || de.Code != Invalid || strings.Contains(de.Message, "strconv") {
			t.Errorf("UnmarshalID(%v) = %v, want an INVALID domain error", in, err)
		}
	}
}

func TestLastColumn(t *testing.T) {
	for in, want := range map[string]string{"racks.site_id, racks.name": "name", "nics.mac": "mac", "site_id, name": "name"} {
		if got := lastColumn(in); got != want {
			t.Errorf("lastColumn(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestErrorfSpellsFieldsAsGraphQL(t *testing.T) {
	for in, want := range map[string]string{"machineId": "machineID", "deploymentId": "deploymentID", "addNicIds": "addNicIDs", "mac": "mac", "id": "id", "": ""} {
		if got := Errorf(in, Invalid, "x").Field; got != want {
			t.Errorf("Errorf(%q).Field = %q, want %q", in, got, want)
		}
	}
}
