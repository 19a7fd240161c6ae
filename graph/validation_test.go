package graph_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/internal/apitest"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/internal/store"
)

// snapshot is every row count and the last event seq: a refused mutation must leave it unchanged.
func snapshot(t *testing.T, st *store.Store) string {
	t.Helper()
	ctx := context.Background()
	c := st.Client
	seq, err := events.LastSeq(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("seq=%d sites=%d racks=%d machines=%d nics=%d disks=%d bmcs=%d networks=%d ranges=%d allocs=%d",
		seq, c.Site.Query().CountX(ctx), c.Rack.Query().CountX(ctx), c.Machine.Query().CountX(ctx), c.NIC.Query().CountX(ctx),
		c.Disk.Query().CountX(ctx), c.BMC.Query().CountX(ctx), c.Network.Query().CountX(ctx), c.IPRange.Query().CountX(ctx),
		c.IPAllocation.Query().CountX(ctx))
}

// payload runs a mutation with one payload field and returns its domain errors and the id of the
// object it returned (if any). Top-level errors fail the test.
func payload(t *testing.T, srv *apitest.Server, q string, vars map[string]any) ([]domainErr, string) {
	t.Helper()
	var data map[string]map[string]json.RawMessage
	srv.Query(t, q, vars, &data)
	for _, p := range data {
		var errs []domainErr
		_ = json.Unmarshal(p["errors"], &errs)
		for k, v := range p {
			if k == "errors" || string(v) == "null" {
				continue
			}
			var obj struct{ ID string }
			_ = json.Unmarshal(v, &obj)
			return errs, obj.ID
		}
		return errs, ""
	}
	t.Fatalf("no payload in %v", data)
	return nil, ""
}

// mustCreate runs a mutation that must succeed and returns the created id.
func mustCreate(t *testing.T, srv *apitest.Server, q string, vars map[string]any) string {
	t.Helper()
	errs, id := payload(t, srv, q, vars)
	if len(errs) > 0 || id == "" {
		t.Fatalf("%s: errors %+v", q, errs)
	}
	return id
}

type refusal struct {
	name, q     string
	vars        map[string]any
	field, code string
}

// expectRefused runs each case and checks the single typed error and that nothing was written.
func expectRefused(t *testing.T, srv *apitest.Server, st *store.Store, cases []refusal) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, st)
			errs, _ := payload(t, srv, tc.q, tc.vars)
			if len(errs) != 1 || errs[0].Field != tc.field || errs[0].Code != tc.code || errs[0].Message == "" {
				t.Fatalf("errors = %+v, want one %s error on %q", errs, tc.code, tc.field)
			}
			assertClean(t, errs[0].Message)
			if after := snapshot(t, st); after != before {
				t.Fatalf("database changed: %s → %s", before, after)
			}
		})
	}
}

// leaks are the ORM's, the driver's and the parser's vocabulary: no message may contain them.
var leaks = []string{"ent:", "constraint failed", "strconv.", "sql:", "SQLSTATE", "pq:", "violates", "validator failed", "missing required"}

func assertClean(t *testing.T, msg string) {
	t.Helper()
	for _, l := range leaks {
		if strings.Contains(msg, l) {
			t.Errorf("message %q contains %q", msg, l)
		}
	}
}

const (
	createNetwork = `mutation($in: CreateNetworkInput!) { createNetwork(input: $in) { network { id } errors { field code message } } }`
	updateNetwork = `mutation($id: ID!, $in: UpdateNetworkInput!) { updateNetwork(id: $id, input: $in) { network { id } errors { field code message } } }`
	createRange   = `mutation($in: CreateIPRangeInput!) { createIPRange(input: $in) { ipRange { id } errors { field code message } } }`
	createAlloc   = `mutation($in: CreateIPAllocationInput!) { createIPAllocation(input: $in) { ipAllocation { id } errors { field code message } } }`
)

// Issue 7 point 12: the IPAM rules.
func TestIPAMRules(t *testing.T) {
	apitest.ForEachDB(t, func(t *testing.T, b apitest.Backend) {
		st := apitest.Open(t, apitest.DSN(t, b))
		fleet(t, st, 2)
		srv := apitest.Serve(t, st)
		ctx := context.Background()
		site := fmt.Sprint(st.Client.Site.Query().FirstIDX(ctx))
		m := fmt.Sprint(st.Client.Machine.Query().FirstIDX(ctx))
		in := func(kv ...any) map[string]any {
			v := map[string]any{}
			for i := 0; i < len(kv); i += 2 {
				v[kv[i].(string)] = kv[i+1]
			}
			return map[string]any{"in": v}
		}
		n1 := mustCreate(t, srv, createNetwork, in("name", "n1", "cidr", "10.50.0.0/24", "router", "10.50.0.1", "siteID", site))
		mustCreate(t, srv, createRange, in("networkID", n1, "name", "r1", "first", "10.50.0.10", "last", "10.50.0.99", "purpose", "HOST"))
		n2 := mustCreate(t, srv, createNetwork, in("name", "n2", "cidr", "10.51.0.0/24", "router", "10.51.0.200", "siteID", site))
		n3 := mustCreate(t, srv, createNetwork, in("name", "n3", "cidr", "10.52.0.0/24", "siteID", site))
		mustCreate(t, srv, createAlloc, in("networkID", n3, "machineID", m, "address", "10.52.0.200"))
		v6 := mustCreate(t, srv, createNetwork, in("name", "v6", "cidr", "fd00:1::/64", "siteID", site))
		mustCreate(t, srv, createRange, in("networkID", v6, "first", "fd00:1::10", "last", "fd00:1::ff", "purpose", "HOST"))
		// Deliberate exception: in a /31 both addresses are hosts.
		p2p := mustCreate(t, srv, createNetwork, in("name", "p2p", "cidr", "10.99.0.0/31", "siteID", site))
		mustCreate(t, srv, createRange, in("networkID", p2p, "first", "10.99.0.0", "last", "10.99.0.1", "purpose", "ADMIN"))
		// The same prefix in another site is a different network.
		other := mustCreate(t, srv, `mutation { createSite(input: {name: "dc-other"}) { site { id } errors { field code message } } }`, nil)
		mustCreate(t, srv, createNetwork, in("name", "n1-elsewhere", "cidr", "10.50.0.0/24", "siteID", other))

		upd := func(id string, kv ...any) map[string]any {
			v := in(kv...)
			v["id"] = id
			return v
		}
		expectRefused(t, srv, st, []refusal{
			{"the whole address space", createNetwork, in("name", "all", "cidr", "0.0.0.0/0"), "cidr", "INVALID"},
			{"the whole IPv6 space", createNetwork, in("name", "all6", "cidr", "::/0"), "cidr", "INVALID"},
			{"multicast space", createNetwork, in("name", "mc", "cidr", "224.0.0.0/24"), "cidr", "INVALID"},
			{"same CIDR in the site", createNetwork, in("name", "dup", "cidr", "10.50.0.0/24", "siteID", site), "cidr", "OVERLAP"},
			{"overlapping CIDR in the site", createNetwork, in("name", "super", "cidr", "10.50.0.0/16", "siteID", site), "cidr", "OVERLAP"},
			{"overlapping IPv6 CIDR", createNetwork, in("name", "v6b", "cidr", "fd00:1::/48", "siteID", site), "cidr", "OVERLAP"},
			{"router outside its network", createNetwork, in("name", "r", "cidr", "10.60.0.0/24", "router", "10.61.0.1", "siteID", site), "router", "OUT_OF_RANGE"},
			{"router on the broadcast address", createNetwork, in("name", "r", "cidr", "10.60.0.0/24", "router", "10.60.0.255"), "router", "OUT_OF_RANGE"},
			{"overlapping ranges", createRange, in("networkID", n1, "first", "10.50.0.90", "last", "10.50.0.120", "purpose", "DHCP"), "first", "OVERLAP"},
			{"range around another", createRange, in("networkID", n1, "first", "10.50.0.2", "last", "10.50.0.200", "purpose", "DHCP"), "last", "OVERLAP"},
			{"range on the network address", createRange, in("networkID", n1, "first", "10.50.0.0", "last", "10.50.0.5", "purpose", "DHCP"), "first", "OUT_OF_RANGE"},
			{"range on the broadcast address", createRange, in("networkID", n1, "first", "10.50.0.200", "last", "10.50.0.255", "purpose", "DHCP"), "last", "OUT_OF_RANGE"},
			{"range name taken in the network", createRange, in("networkID", n1, "name", "r1", "first", "10.50.0.150", "last", "10.50.0.160", "purpose", "DHCP"), "name", "DUPLICATE"},
			{"overlapping IPv6 ranges", createRange, in("networkID", v6, "first", "fd00:1::1", "last", "fd00:1::10", "purpose", "DHCP"), "last", "OVERLAP"},
			{"IPv6 subnet-router address", createRange, in("networkID", v6, "first", "fd00:1::", "last", "fd00:1::5", "purpose", "DHCP"), "first", "OUT_OF_RANGE"},
			{"allocation on the network address", createAlloc, in("networkID", n3, "address", "10.52.0.0"), "address", "OUT_OF_RANGE"},
			{"CIDR change strands a range", updateNetwork, upd(n1, "cidr", "10.50.0.0/28"), "cidr", "OUT_OF_RANGE"},
			{"CIDR change strands the router", updateNetwork, upd(n2, "cidr", "10.51.0.0/25"), "router", "OUT_OF_RANGE"},
			{"CIDR change strands an allocation", updateNetwork, upd(n3, "cidr", "10.52.0.0/25"), "cidr", "OUT_OF_RANGE"},
			{"CIDR change onto a neighbour", updateNetwork, upd(n3, "cidr", "10.50.0.0/23"), "cidr", "OVERLAP"},
			{"router moved outside", updateNetwork, upd(n2, "router", "10.9.9.9"), "router", "OUT_OF_RANGE"},
		})
	})
}

// rawPost posts body to the server's GraphQL endpoint and returns the status and decoded answer.
func rawPost(t *testing.T, srv *apitest.Server, body io.Reader, length int64) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/graphql", body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = length
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	data, _ := io.ReadAll(res.Body)
	_ = json.Unmarshal(data, &out)
	return res.StatusCode, out
}

type topError struct {
	Message    string
	Extensions map[string]any
}

func topErrors(t *testing.T, srv *apitest.Server, q string, vars map[string]any) []topError {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": q, "variables": vars})
	_, out := rawPost(t, srv, bytes.NewReader(body), int64(len(body)))
	raw, _ := json.Marshal(out["errors"])
	var errs []topError
	_ = json.Unmarshal(raw, &errs)
	return errs
}

// Issue 7 point 15: a body over the limit is answered 413, declared or chunked.
func TestBodyOverLimitIs413(t *testing.T) {
	st := apitest.Open(t, apitest.DSN(t, apitest.SQLite))
	srv := apitest.Serve(t, st)
	small := []byte(`{"query":"{ sites { totalCount } }"}`)
	if code, _ := rawPost(t, srv, bytes.NewReader(small), int64(len(small))); code != http.StatusOK {
		t.Fatalf("small body: status %d", code)
	}
	huge := append([]byte(`{"query":"{ sites { totalCount } }`), bytes.Repeat([]byte(" "), 2<<20)...)
	huge = append(huge, []byte(`"}`)...)
	if code, out := rawPost(t, srv, bytes.NewReader(huge), int64(len(huge))); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("2 MiB body with Content-Length: status %d, %v", code, out)
	}
	// -1: unknown length, sent chunked.
	if code, _ := rawPost(t, srv, io.MultiReader(bytes.NewReader(huge)), -1); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("2 MiB chunked body: status %d", code)
	}
}

// Issue 7 point 13: ids, references and edges fail with typed errors naming the argument.
func TestErrorsAreTyped(t *testing.T) {
	apitest.ForEachDB(t, func(t *testing.T, b apitest.Backend) {
		st := apitest.Open(t, apitest.DSN(t, b))
		fleet(t, st, 4)
		srv := apitest.Serve(t, st)
		ctx := context.Background()
		c := st.Client
		ms := c.Machine.Query().WithNics().WithDisks().Order(ent.Asc("id")).AllX(ctx)
		m, m2 := ms[0], ms[1]
		rack := c.Rack.GetX(ctx, *m.RackID)
		id := func(v int) string { return fmt.Sprint(v) }

		// Malformed ids are refused before any resolver runs, as typed top-level errors.
		for _, tc := range []struct {
			q     string
			vars  map[string]any
			field string
		}{
			{`mutation { updateMachine(id: "abc", input: {serial: "x"}) { errors { field } } }`, nil, "id"},
			{`mutation($m: ID!) { createNIC(input: {machineID: $m, mac: "02:00:00:00:00:77"}) { errors { field } } }`, map[string]any{"m": "12x"}, "machineID"},
			{`mutation { createNIC(input: {machineID: "-3", mac: "02:00:00:00:00:77"}) { errors { field } } }`, nil, "machineID"},
			{`mutation { deleteRack(id: "1.5") { errors { field } } }`, nil, "id"},
		} {
			before := snapshot(t, st)
			errs := topErrors(t, srv, tc.q, tc.vars)
			if len(errs) != 1 || errs[0].Extensions["code"] != "INVALID" || errs[0].Extensions["field"] != tc.field {
				t.Errorf("%s: errors = %+v, want INVALID on %s", tc.q, errs, tc.field)
			}
			for _, e := range errs {
				assertClean(t, e.Message)
			}
			if after := snapshot(t, st); after != before {
				t.Fatalf("database changed: %s → %s", before, after)
			}
		}

		otherNIC := ms[2].Edges.Nics[0]
		expectRefused(t, srv, st, []refusal{
			{"id of another type", `mutation($id: ID!) { updateMachine(id: $id, input: {serial: "x"}) { machine { id } errors { field code message } } }`,
				map[string]any{"id": id(rack.ID)}, "id", "NOT_FOUND"},
			{"remove a NIC from its machine", `mutation($id: ID!, $n: ID!) { updateMachine(id: $id, input: {removeNicIDs: [$n]}) { machine { id } errors { field code message } } }`,
				map[string]any{"id": id(m.ID), "n": id(m.Edges.Nics[0].ID)}, "removeNicIDs", "INVALID"},
			{"clear a machine's disks", `mutation($id: ID!) { updateMachine(id: $id, input: {clearDisks: true}) { machine { id } errors { field code message } } }`,
				map[string]any{"id": id(m.ID)}, "clearDisks", "INVALID"},
			{"remove a rack from its site", `mutation($id: ID!, $r: ID!) { updateSite(id: $id, input: {removeRackIDs: [$r]}) { site { id } errors { field code message } } }`,
				map[string]any{"id": id(rack.SiteID), "r": id(rack.ID)}, "removeRackIDs", "INVALID"},
			{"clear a machine's BMC", `mutation($id: ID!) { updateMachine(id: $id, input: {clearBmc: true}) { machine { id } errors { field code message } } }`,
				map[string]any{"id": id(m.ID)}, "clearBmc", "INVALID"},
			{"duplicate rack name", `mutation($s: ID!, $n: String!) { createRack(input: {siteID: $s, name: $n}) { rack { id } errors { field code message } } }`,
				map[string]any{"s": id(rack.SiteID), "n": rack.Name}, "name", "DUPLICATE"},
			{"move a machine onto another's U", `mutation($r: ID!, $m: ID!) { updateRack(id: $r, input: {addMachineIDs: [$m]}) { rack { id } errors { field code message } } }`,
				map[string]any{"r": id(rack.ID), "m": id(placeOver(t, st, m))}, "addMachineIDs", "OVERLAP"},
			{"move a NIC that does not exist", `mutation($id: ID!) { updateMachine(id: $id, input: {addNicIDs: [987654321]}) { machine { id } errors { field code message } } }`,
				map[string]any{"id": id(m.ID)}, "addNicIDs", "NOT_FOUND"},
		})

		// Point 14: removing an id that is not attached changes nothing and writes no event.
		for _, q := range []string{
			`mutation($id: ID!, $n: ID!) { updateMachine(id: $id, input: {removeNicIDs: [$n]}) { machine { id } errors { field code message } } }`,
			`mutation($id: ID!, $n: ID!) { updateMachine(id: $id, input: {removeAllocationIDs: [$n]}) { machine { id } errors { field code message } } }`,
		} {
			before := snapshot(t, st)
			n := otherNIC.ID
			if strings.Contains(q, "Allocation") {
				n = c.IPAllocation.Query().FirstIDX(ctx) // belongs to some machine; attach check below
				if a := c.IPAllocation.GetX(ctx, n); a.MachineID != nil && *a.MachineID == m2.ID {
					t.Fatal("fixture: allocation unexpectedly on m2")
				}
			}
			errs, _ := payload(t, srv, q, map[string]any{"id": id(m2.ID), "n": id(n)})
			if len(errs) != 0 {
				t.Fatalf("no-op removal: errors %+v", errs)
			}
			if after := snapshot(t, st); after != before {
				t.Fatalf("no-op removal wrote: %s → %s", before, after)
			}
		}
		// A real move from the parent's side goes through the child's rules and is evented.
		before, _ := events.LastSeq(ctx, c)
		errs, _ := payload(t, srv, `mutation($id: ID!, $n: ID!) { updateMachine(id: $id, input: {addNicIDs: [$n]}) { machine { id } errors { field code message } } }`,
			map[string]any{"id": id(m2.ID), "n": id(otherNIC.ID)})
		if len(errs) != 0 || c.NIC.GetX(ctx, otherNIC.ID).MachineID != m2.ID {
			t.Fatalf("addNicIDs: errors %+v", errs)
		}
		if after, _ := events.LastSeq(ctx, c); after != before+1 {
			t.Fatalf("addNicIDs wrote %d events, want 1 (nic.updated)", after-before)
		}
	})
}

// placeOver creates an unracked machine whose U position overlaps m's.
func placeOver(t *testing.T, st *store.Store, m *ent.Machine) int {
	t.Helper()
	var id int
	err := st.Tx(context.Background(), func(ctx context.Context, tx *ent.Tx) error {
		v, err := tx.Machine.Create().SetName("floating.test.example").Save(ctx)
		if err != nil {
			return err
		}
		// Bypass the hooks' "position needs a rack" on purpose: a U position without rack, as an
		// older version allowed, must still not be moved onto another machine.
		id = v.ID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB.Exec(`UPDATE machines SET u_position = ` + fmt.Sprint(*m.UPosition) + ` WHERE id = ` + fmt.Sprint(id)); err != nil {
		t.Fatal(err)
	}
	return id
}

// Issue 7 point 14: obviously wrong values are refused with typed errors and write nothing.
func TestObviouslyWrongInputs(t *testing.T) {
	apitest.ForEachDB(t, func(t *testing.T, b apitest.Backend) {
		st := apitest.Open(t, apitest.DSN(t, b))
		fleet(t, st, 2)
		srv := apitest.Serve(t, st)
		ctx := context.Background()
		m := fmt.Sprint(st.Client.Machine.Query().FirstIDX(ctx))
		bmc := fmt.Sprint(st.Client.BMC.Query().FirstIDX(ctx))
		rack := fmt.Sprint(st.Client.Rack.Query().FirstIDX(ctx))
		bare := mustCreate(t, srv, `mutation { createMachine(input: {name: "bare.test.example"}) { machine { id } errors { field code message } } }`, nil)
		nic := `mutation($m: ID!, $mac: String!) { createNIC(input: {machineID: $m, mac: $mac}) { nic { id } errors { field code message } } }`
		newBMC := `mutation($m: ID!, $in: String!, $s: String, $p: Int) { createBMC(input: {machineID: $m, protocol: REDFISH, address: $in, scheme: $s, port: $p}) { bmc { id } errors { field code message } } }`
		updBMC := `mutation($id: ID!, $p: Int) { updateBMC(id: $id, input: {port: $p}) { bmc { id } errors { field code message } } }`
		expectRefused(t, srv, st, []refusal{
			{"multicast MAC", nic, map[string]any{"m": m, "mac": "01:00:5e:00:00:01"}, "mac", "INVALID"},
			{"broadcast MAC", nic, map[string]any{"m": m, "mac": "FF-FF-FF-FF-FF-FF"}, "mac", "INVALID"},
			{"all-zero MAC", nic, map[string]any{"m": m, "mac": "0000.0000.0000"}, "mac", "INVALID"},
			{"BMC address with a scheme", newBMC, map[string]any{"m": bare, "in": "https://bmc.example/"}, "address", "INVALID"},
			{"BMC address with spaces", newBMC, map[string]any{"m": bare, "in": "bmc one"}, "address", "INVALID"},
			{"BMC address 999.1.1.1", newBMC, map[string]any{"m": bare, "in": "999.1.1.1"}, "address", "INVALID"},
			{"unknown BMC scheme", newBMC, map[string]any{"m": bare, "in": "10.1.2.3", "s": "ftp"}, "scheme", "INVALID"},
			{"BMC port 0", newBMC, map[string]any{"m": bare, "in": "10.1.2.3", "p": 0}, "port", "OUT_OF_RANGE"},
			{"BMC port 0 on update", updBMC, map[string]any{"id": bmc, "p": 0}, "port", "OUT_OF_RANGE"},
			{"BMC port 70000", updBMC, map[string]any{"id": bmc, "p": 70000}, "port", "OUT_OF_RANGE"},
			{"negative U position", `mutation($r: ID!) { createMachine(input: {name: "neg.test.example", rackID: $r, uPosition: -2}) { machine { id } errors { field code message } } }`,
				map[string]any{"r": rack}, "uPosition", "OUT_OF_RANGE"},
			{"negative rack position", `mutation($r: ID!) { updateRack(id: $r, input: {position: -1}) { rack { id } errors { field code message } } }`,
				map[string]any{"r": rack}, "position", "OUT_OF_RANGE"},
			{"NUL in a serial", `mutation($m: ID!) { updateMachine(id: $m, input: {serial: "ab\u0000cd"}) { machine { id } errors { field code message } } }`,
				map[string]any{"m": m}, "serial", "INVALID"},
			{"overlong site description", `mutation($d: String!) { createSite(input: {name: "long", description: $d}) { site { id } errors { field code message } } }`,
				map[string]any{"d": strings.Repeat("d", 5000)}, "description", "INVALID"},
		})
		// Accepted spellings still work: an IPv6 BMC, a host name, the default port.
		for _, addr := range []string{"fd00::10", "bmc-7.oob.example"} {
			errs, _ := payload(t, srv, newBMC, map[string]any{"m": bare, "in": addr})
			if len(errs) != 0 {
				t.Fatalf("BMC %s: %+v", addr, errs)
			}
			id := st.Client.BMC.Query().Order(ent.Desc("id")).FirstIDX(ctx)
			if _, err := srv.Do(`mutation($id: ID!) { deleteBMC(id: $id) { deletedID } }`, map[string]any{"id": fmt.Sprint(id)}); err != nil {
				t.Fatal(err)
			}
		}
	})
}
