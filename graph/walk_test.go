package graph_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/prybar/prybar/internal/apitest"
)

type introType struct {
	Kind   string
	Name   *string
	OfType *introType
}

// base returns the named type and whether it is a list.
func (t *introType) base() (string, bool) {
	list := false
	for t != nil {
		if t.Kind == "LIST" {
			list = true
		}
		if t.Name != nil {
			return *t.Name, list
		}
		t = t.OfType
	}
	return "", list
}

// Issue 7 points 13 and 14: every create and update mutation, fed bad values field by field (the
// fields and their types read from the schema by introspection), answers with typed errors whose
// messages carry no ORM, SQL or parser text and name a field of the input; a refused mutation
// writes nothing; NUL bytes and overlong strings are refused in every string field.
func TestMutationInputsWalk(t *testing.T) {
	st := apitest.Open(t, apitest.DSN(t, apitest.SQLite))
	fleet(t, st, 3)
	srv := apitest.Serve(t, st)
	ctx := context.Background()
	c := st.Client
	site := fmt.Sprint(c.Site.Query().FirstIDX(ctx))
	machine := fmt.Sprint(c.Machine.Query().FirstIDX(ctx))
	bare := mustCreate(t, srv, `mutation { createMachine(input: {name: "bare.walk.example"}) { machine { id } errors { field code message } } }`, nil)
	net := mustCreate(t, srv, createNetwork, map[string]any{"in": map[string]any{"name": "walk", "cidr": "10.200.0.0/24"}})

	var schema struct {
		Schema struct {
			MutationType struct {
				Fields []struct {
					Name string
					Args []struct {
						Name string
						Type introType
					}
				}
			}
			Types []struct {
				Name        string
				Kind        string
				InputFields []struct {
					Name string
					Type introType
				}
			}
		} `json:"__schema"`
	}
	tref := `type { kind name ofType { kind name ofType { kind name ofType { kind name } } } }`
	srv.Query(t, `{ __schema { mutationType { fields { name args { name `+tref+` } } }
		types { name kind inputFields { name `+tref+` } } } }`, nil, &schema)
	inputs := map[string][]struct {
		name, typ string
		list      bool
	}{}
	for _, ty := range schema.Schema.Types {
		if ty.Kind != "INPUT_OBJECT" {
			continue
		}
		for _, f := range ty.InputFields {
			typ, list := f.Type.base()
			inputs[ty.Name] = append(inputs[ty.Name], struct {
				name, typ string
				list      bool
			}{f.Name, typ, list})
		}
	}

	// A valid input for each create: each case below replaces one field of it.
	valid := map[string]map[string]any{
		"createSite":         {"name": "walk-site"},
		"createRack":         {"name": "walk-rack", "siteID": site},
		"createMachine":      {"name": "walk.example.org"},
		"createNIC":          {"mac": "02:00:00:00:99:01", "machineID": machine},
		"createDisk":         {"name": "sdz", "machineID": machine},
		"createBMC":          {"protocol": "REDFISH", "address": "bmc.walk.example", "machineID": bare},
		"createNetwork":      {"name": "walk-net", "cidr": "10.201.0.0/24"},
		"createIPRange":      {"first": "10.200.0.10", "last": "10.200.0.20", "purpose": "HOST", "networkID": net},
		"createIPAllocation": {"address": "10.200.0.50", "networkID": net},
	}
	// The record each update targets.
	target := map[string]string{
		"updateSite": site, "updateRack": fmt.Sprint(c.Rack.Query().FirstIDX(ctx)), "updateMachine": machine,
		"updateNIC": fmt.Sprint(c.NIC.Query().FirstIDX(ctx)), "updateDisk": fmt.Sprint(c.Disk.Query().FirstIDX(ctx)),
		"updateBMC": fmt.Sprint(c.BMC.Query().FirstIDX(ctx)), "updateNetwork": net,
		"updateIPRange":      fmt.Sprint(c.IPRange.Query().FirstIDX(ctx)),
		"updateIPAllocation": fmt.Sprint(c.IPAllocation.Query().FirstIDX(ctx)),
	}
	nul, long := "bad\x00value", strings.Repeat("x", 5000)
	badValues := func(typ string, list bool) []any {
		var vs []any
		switch typ {
		case "String":
			vs = []any{nul, long, "", " ", "../../etc/passwd", "ünïcødé ☃", "-1"}
		case "Int":
			vs = []any{-1, 0, 2147483647}
		case "ID":
			vs = []any{"abc", "-5", "987654321", site, "1e3"}
		case "Boolean":
			vs = []any{true}
		default:
			return nil // enums and other scalars: the GraphQL layer validates them
		}
		if list {
			for i, v := range vs {
				vs[i] = []any{v}
			}
		}
		return vs
	}

	var names []string
	for _, f := range schema.Schema.MutationType.Fields {
		if strings.HasPrefix(f.Name, "create") || strings.HasPrefix(f.Name, "update") {
			names = append(names, f.Name)
		}
	}
	sort.Strings(names)
	cases, refused := 0, 0
	for _, f := range schema.Schema.MutationType.Fields {
		base, isCreate := valid[f.Name]
		id, isUpdate := target[f.Name]
		if !isCreate && !isUpdate {
			continue
		}
		var inputType string
		for _, a := range f.Args {
			if a.Name == "input" {
				inputType, _ = a.Type.base()
			}
		}
		fields := inputs[inputType]
		if len(fields) == 0 {
			t.Fatalf("%s: no input fields found", f.Name)
		}
		known := map[string]bool{"id": true, "": true}
		for _, fd := range fields {
			known[fd.name] = true
		}
		q := fmt.Sprintf(`mutation($in: %s!) { %s(input: $in) { errors { field code message } } }`, inputType, f.Name)
		if isUpdate {
			q = fmt.Sprintf(`mutation($id: ID!, $in: %s!) { %s(id: $id, input: $in) { errors { field code message } } }`, inputType, f.Name)
		}
		for _, fd := range fields {
			for _, bad := range badValues(fd.typ, fd.list) {
				in := map[string]any{}
				for k, v := range base {
					in[k] = v
				}
				in[fd.name] = bad
				vars := map[string]any{"in": in}
				if isUpdate {
					vars["id"] = id
				}
				cases++
				label := fmt.Sprintf("%s %s=%.40q", f.Name, fd.name, fmt.Sprint(bad))
				before := snapshot(t, st)
				resp, err := srv.Do(q, vars)
				if err != nil {
					t.Fatalf("%s: %v", label, err)
				}
				failed := len(resp.Errors) > 0
				for _, e := range resp.Errors {
					assertCleanLabel(t, label, e.Message)
				}
				if !failed {
					var data map[string]struct{ Errors []domainErr }
					if err := resp.Decode(&data); err != nil {
						t.Fatalf("%s: %v", label, err)
					}
					for _, p := range data {
						for _, e := range p.Errors {
							failed = true
							assertCleanLabel(t, label, e.Message)
							if !known[e.Field] || e.Code == "" {
								t.Errorf("%s: error names %q (%s), not a field of %s", label, e.Field, e.Code, inputType)
							}
						}
					}
				}
				if failed {
					refused++
					if after := snapshot(t, st); after != before {
						t.Errorf("%s: refused but wrote: %s → %s", label, before, after)
					}
				} else if s, ok := bad.(string); ok && (s == nul || s == long) {
					t.Errorf("%s: accepted", label)
				} else if l, ok := bad.([]any); ok && len(l) == 1 && (l[0] == nul || l[0] == long) {
					t.Errorf("%s: accepted", label)
				}
			}
		}
	}
	t.Logf("%d mutations, %d bad inputs, %d refused", len(names), cases, refused)
	if cases < 300 {
		t.Fatalf("only %d cases generated", cases)
	}
}

func assertCleanLabel(t *testing.T, label, msg string) {
	t.Helper()
	for _, l := range leaks {
		if strings.Contains(msg, l) {
			t.Errorf("%s: message %q contains %q", label, msg, l)
		}
	}
}
