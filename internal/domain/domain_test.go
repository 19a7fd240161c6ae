package domain

import "testing"

func TestGraphQLName(t *testing.T) {
	for in, want := range map[string]string{"mac": "mac", "u_position": "uPosition", "machine_id": "machineID", "": ""} {
		if got := GraphQLName(in); got != want {
			t.Errorf("GraphQLName(%q) = %q, want %q", in, got, want)
		}
	}
}
