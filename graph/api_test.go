package graph_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/fixtures"
	"github.com/prybar/prybar/internal/apitest"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/internal/pgtest"
	"github.com/prybar/prybar/internal/store"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// fleet loads a generated fleet of n machines.
func fleet(t testing.TB, st *store.Store, n int) {
	t.Helper()
	f := fixtures.Generate(fixtures.GenerateOptions{Machines: n, Racks: 4, Seed: 7})
	if _, err := fixtures.Load(context.Background(), st, "generated", f); err != nil {
		t.Fatalf("load fleet: %v", err)
	}
}

const topology = `{
  sites { totalCount edges { node { id name
    racks { totalCount edges { node { id name height
      machines { totalCount edges { node { id name uPosition uHeight
        nics { totalCount edges { node { mac } } }
        disks { totalCount edges { node { name sizeBytes } } }
        bmc { protocol address }
      } } }
    } } }
  } } }
}`

type topo struct {
	Sites struct {
		Edges []struct {
			Node struct {
				Racks struct {
					Edges []struct {
						Node struct {
							Machines struct {
								TotalCount int
								Edges      []struct {
									Node struct {
										Name string
										NICs struct{ TotalCount int }  `json:"nics"`
										BMC  *struct{ Address string } `json:"bmc"`
									}
								}
							}
						}
					}
				}
			}
		}
	}
}

func (t topo) machines() (n, withBMC, nics int) {
	for _, s := range t.Sites.Edges {
		for _, r := range s.Node.Racks.Edges {
			for _, m := range r.Node.Machines.Edges {
				n++
				nics += m.Node.NICs.TotalCount
				if m.Node.BMC != nil {
					withBMC++
				}
			}
		}
	}
	return
}

// The nested topology query must cost a fixed number of SQL statements, however many machines.
func TestTopologyStatementsBounded(t *testing.T) {
	apitest.ForEachDB(t, func(t *testing.T, b apitest.Backend) {
		counts := map[int]int64{}
		for _, n := range []int{100, 1000} {
			st := apitest.Open(t, apitest.DSN(t, b))
			fleet(t, st, n)
			srv := apitest.Serve(t, st)
			before := st.Counter.Statements()
			var got topo
			srv.Query(t, topology, nil, &got)
			counts[n] = st.Counter.Statements() - before
			machines, withBMC, nics := got.machines()
			if machines != n || withBMC != n || nics != 2*n {
				t.Fatalf("%d machines: query returned %d machines, %d BMCs, %d NICs", n, machines, withBMC, nics)
			}
		}
		t.Logf("statements per topology query: %v", counts)
		if counts[100] != counts[1000] {
			t.Fatalf("statements grow with machines: 100 → %d, 1000 → %d", counts[100], counts[1000])
		}
	})
}

type nodeRef struct {
	ID       string `json:"id"`
	Typename string `json:"__typename"`
}

// node(id:) resolves every type by its global id.
func TestNodeResolvesEveryType(t *testing.T) {
	apitest.ForEachDB(t, func(t *testing.T, b apitest.Backend) {
		st := apitest.Open(t, apitest.DSN(t, b))
		fleet(t, st, 2)
		ctx := context.Background()
		// Records the inventory fixtures do not create.
		err := st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
			m := tx.Machine.Query().FirstX(ctx)
			r := tx.Role.Create().SetName("r1").SetExecutor("noop").SaveX(ctx)
			d := tx.Deployment.Create().SetName("d1").SaveX(ctx)
			nr := tx.NodeRole.Create().SetMachineID(m.ID).SetRoleID(r.ID).SetDeploymentID(d.ID).SaveX(ctx)
			tx.Run.Create().SetNodeRoleID(nr.ID).SetExecutor("noop").SaveX(ctx)
			tx.Attribute.Create().SetName("a1").SaveX(ctx)
			tx.Operation.Create().SetMachineID(m.ID).SetAction("power-on").SaveX(ctx)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		srv := apitest.Serve(t, st)
		ids := map[string]int{}
		c := st.Client
		for typ, id := range map[string]int{
			"Site": c.Site.Query().FirstIDX(ctx), "Rack": c.Rack.Query().FirstIDX(ctx), "Machine": c.Machine.Query().FirstIDX(ctx),
			"NIC": c.NIC.Query().FirstIDX(ctx), "Disk": c.Disk.Query().FirstIDX(ctx), "BMC": c.BMC.Query().FirstIDX(ctx),
			"Network": c.Network.Query().FirstIDX(ctx), "IPRange": c.IPRange.Query().FirstIDX(ctx),
			"IPAllocation": c.IPAllocation.Query().FirstIDX(ctx), "Role": c.Role.Query().FirstIDX(ctx),
			"Deployment": c.Deployment.Query().FirstIDX(ctx), "NodeRole": c.NodeRole.Query().FirstIDX(ctx),
			"Run": c.Run.Query().FirstIDX(ctx), "Attribute": c.Attribute.Query().FirstIDX(ctx), "Event": c.Event.Query().FirstIDX(ctx),
			"Operation": c.Operation.Query().FirstIDX(ctx),
		} {
			ids[typ] = id
		}
		if len(ids) != 16 {
			t.Fatalf("%d types checked, want all 16", len(ids))
		}
		for typ, id := range ids {
			var got struct{ Node *nodeRef }
			srv.Query(t, `query($id: ID!) { node(id: $id) { id __typename } }`, map[string]any{"id": id}, &got)
			if got.Node == nil || got.Node.Typename != typ || got.Node.ID != fmt.Sprint(id) {
				t.Errorf("node(%d) = %+v, want %s", id, got.Node, typ)
			}
		}
		var none struct{ Node *nodeRef }
		resp, err := srv.Do(`{ node(id: 999999999999) { id } }`, nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = json.Unmarshal(resp.Data, &none)
		if none.Node != nil || len(resp.Errors) == 0 {
			t.Errorf("node(unknown) = %+v, errors %v; want null with an error", none.Node, resp.Errors)
		}
	})
}

// Cursor pagination walks every machine exactly once; totalCount honours filters.
func TestPaginationAndTotalCount(t *testing.T) {
	apitest.ForEachDB(t, func(t *testing.T, b apitest.Backend) {
		st := apitest.Open(t, apitest.DSN(t, b))
		fleet(t, st, 1000)
		srv := apitest.Serve(t, st)
		seen := map[string]bool{}
		var after *string
		pages := 0
		for {
			var page struct {
				Machines struct {
					TotalCount int
					PageInfo   struct {
						HasNextPage bool
						EndCursor   *string
					}
					Edges []struct{ Node struct{ ID, Name string } }
				}
			}
			srv.Query(t, `query($after: Cursor) { machines(first: 77, after: $after, orderBy: {field: NAME}) {
				totalCount pageInfo { hasNextPage endCursor } edges { node { id name } } } }`,
				map[string]any{"after": after}, &page)
			pages++
			if page.Machines.TotalCount != 1000 {
				t.Fatalf("totalCount = %d, want 1000", page.Machines.TotalCount)
			}
			for _, e := range page.Machines.Edges {
				if seen[e.Node.ID] {
					t.Fatalf("machine %s seen twice", e.Node.Name)
				}
				seen[e.Node.ID] = true
			}
			if !page.Machines.PageInfo.HasNextPage {
				break
			}
			after = page.Machines.PageInfo.EndCursor
			if pages > 100 {
				t.Fatal("pagination does not end")
			}
		}
		if len(seen) != 1000 || pages != 13 {
			t.Fatalf("walked %d machines in %d pages, want 1000 in 13", len(seen), pages)
		}
		// totalCount with a filter equals the number of matching records counted independently.
		ctx := context.Background()
		all := st.Client.Machine.Query().AllX(ctx)
		want := 0
		for _, m := range all {
			if m.Model == "ProLiant DL380 Gen10" && m.UHeight == 2 {
				want++
			}
		}
		var filtered struct{ Machines struct{ TotalCount int } }
		srv.Query(t, `{ machines(first: 5, where: {model: "ProLiant DL380 Gen10", uHeight: 2}) { totalCount } }`, nil, &filtered)
		if filtered.Machines.TotalCount != want || want == 0 {
			t.Fatalf("filtered totalCount = %d, want %d", filtered.Machines.TotalCount, want)
		}
		var nested struct {
			Racks struct {
				Edges []struct {
					Node struct {
						Name     string
						Machines struct{ TotalCount int }
					}
				}
			}
		}
		srv.Query(t, `{ racks { edges { node { name machines(first: 1, where: {uHeight: 2}) { totalCount } } } } }`, nil, &nested)
		for _, r := range nested.Racks.Edges {
			n := 0
			for _, m := range all {
				if m.RackID != nil && m.UHeight == 2 {
					rk := st.Client.Rack.GetX(ctx, *m.RackID)
					if rk.Name == r.Node.Name {
						n++
					}
				}
			}
			if r.Node.Machines.TotalCount != n {
				t.Errorf("rack %s: nested filtered totalCount = %d, want %d", r.Node.Name, r.Node.Machines.TotalCount, n)
			}
		}
	})
}

// fingerprint summarises the database so a test can prove a failed mutation wrote nothing.
func fingerprint(t *testing.T, st *store.Store) string {
	ctx := context.Background()
	c := st.Client
	seq, err := events.LastSeq(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("seq=%d machines=%d nics=%d racks=%d allocs=%d", seq,
		c.Machine.Query().CountX(ctx), c.NIC.Query().CountX(ctx), c.Rack.Query().CountX(ctx), c.IPAllocation.Query().CountX(ctx))
}

type domainErr struct{ Field, Code, Message string }

// Invalid input returns a domain error naming the field, and writes nothing.
func TestInvalidInputDomainErrors(t *testing.T) {
	apitest.ForEachDB(t, func(t *testing.T, b apitest.Backend) {
		st := apitest.Open(t, apitest.DSN(t, b))
		fleet(t, st, 3)
		ctx := context.Background()
		srv := apitest.Serve(t, st)
		m := st.Client.Machine.Query().Order(ent.Asc("id")).FirstX(ctx)
		nic := st.Client.NIC.Query().FirstX(ctx)
		rack := st.Client.Rack.GetX(ctx, *m.RackID)
		nw := st.Client.Network.Query().FirstX(ctx)
		id := func(v int) string { return fmt.Sprint(v) }
		cases := []struct {
			name, mutation string
			vars           map[string]any
			field, code    string
		}{
			{"bad MAC", `mutation($m: ID!) { createNIC(input: {machineID: $m, mac: "zz:00:11:22:33:44"}) { nic { id } errors { field code message } } }`,
				map[string]any{"m": id(m.ID)}, "mac", "INVALID"},
			{"duplicate MAC", `mutation($m: ID!, $mac: String!) { createNIC(input: {machineID: $m, mac: $mac}) { nic { id } errors { field code message } } }`,
				map[string]any{"m": id(m.ID), "mac": strings.ToUpper(nic.MAC)}, "mac", "DUPLICATE"},
			{"overlapping rack position", `mutation($r: ID!, $u: Int!) { createMachine(input: {name: "overlap.test.example", rackID: $r, uPosition: $u}) { machine { id } errors { field code message } } }`,
				map[string]any{"r": id(rack.ID), "u": *m.UPosition}, "uPosition", "OVERLAP"},
			{"taller than the rack", `mutation($r: ID!) { createMachine(input: {name: "tall.test.example", rackID: $r, uPosition: 1, uHeight: 50}) { machine { id } errors { field code message } } }`,
				map[string]any{"r": id(rack.ID)}, "uHeight", "OUT_OF_RANGE"},
			{"above the top of the rack", `mutation($r: ID!) { createMachine(input: {name: "top.test.example", rackID: $r, uPosition: 42, uHeight: 2}) { machine { id } errors { field code message } } }`,
				map[string]any{"r": id(rack.ID)}, "uPosition", "OUT_OF_RANGE"},
			{"move onto another machine", `mutation($id: ID!, $u: Int!) { updateMachine(id: $id, input: {uPosition: $u}) { machine { id } errors { field code message } } }`,
				map[string]any{"id": id(st.Client.Machine.Query().Order(ent.Desc("id")).FirstIDX(ctx)), "u": *m.UPosition}, "uPosition", "OVERLAP"},
			{"bad FQDN", `mutation { createMachine(input: {name: "not a name"}) { machine { id } errors { field code message } } }`,
				nil, "name", "INVALID"},
			{"unknown id on update", `mutation { updateMachine(id: 123456789, input: {serial: "x"}) { machine { id } errors { field code message } } }`,
				nil, "id", "NOT_FOUND"},
			{"unknown reference", `mutation { createNIC(input: {machineID: 123456789, mac: "02:aa:bb:cc:dd:ee"}) { nic { id } errors { field code message } } }`,
				nil, "machineID", "NOT_FOUND"},
			{"unknown id on delete", `mutation { deleteNIC(id: 123456789) { deletedID errors { field code message } } }`,
				nil, "id", "NOT_FOUND"},
			{"address outside its network", `mutation($n: ID!, $m: ID!) { createIPAllocation(input: {networkID: $n, machineID: $m, address: "192.0.2.7"}) { ipAllocation { id } errors { field code message } } }`,
				map[string]any{"n": id(nw.ID), "m": id(m.ID)}, "address", "OUT_OF_RANGE"},
			{"bad CIDR", `mutation { createNetwork(input: {name: "bad", cidr: "10.0.0.1/8"}) { network { id } errors { field code message } } }`,
				nil, "cidr", "INVALID"},
			{"rack shrunk below its machines", `mutation($r: ID!) { updateRack(id: $r, input: {height: 2}) { rack { id } errors { field code message } } }`,
				map[string]any{"r": id(rack.ID)}, "height", "OUT_OF_RANGE"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				before := fingerprint(t, st)
				var data map[string]struct{ Errors []domainErr }
				srv.Query(t, tc.mutation, tc.vars, &data)
				var errs []domainErr
				for _, p := range data {
					errs = p.Errors
				}
				if len(errs) != 1 || errs[0].Field != tc.field || errs[0].Code != tc.code || errs[0].Message == "" {
					t.Fatalf("errors = %+v, want one %s error on %q", errs, tc.code, tc.field)
				}
				if after := fingerprint(t, st); after != before {
					t.Fatalf("database changed: %s → %s", before, after)
				}
			})
		}
		// A valid mutation still works, and the MAC is stored canonically.
		var ok struct {
			CreateNIC struct {
				NIC    struct{ MAC string } `json:"nic"`
				Errors []domainErr
			} `json:"createNIC"`
		}
		srv.Query(t, `mutation($m: ID!) { createNIC(input: {machineID: $m, mac: "02-AA-BB-CC-DD-EE"}) { nic { mac } errors { field code message } } }`,
			map[string]any{"m": id(m.ID)}, &ok)
		if len(ok.CreateNIC.Errors) != 0 || ok.CreateNIC.NIC.MAC != "02:aa:bb:cc:dd:ee" {
			t.Fatalf("valid createNIC = %+v", ok.CreateNIC)
		}
	})
}

// Invalid GraphQL gets a clear error, not a crash.
func TestInvalidGraphQL(t *testing.T) {
	apitest.ForEachDB(t, func(t *testing.T, b apitest.Backend) { invalidGraphQL(t, b) })
}

func invalidGraphQL(t *testing.T, b apitest.Backend) {
	st := apitest.Open(t, apitest.DSN(t, b))
	srv := apitest.Serve(t, st)
	for _, q := range []string{`{ machines { edges { node { nosuchfield } } } }`, `{ machines(`, `mutation { createSite(input: {}) { site { id } } }`} {
		resp, err := srv.Do(q, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Errors) == 0 || resp.Errors[0].Message == "" {
			t.Errorf("%q: no error", q)
		}
	}
}

// Natural-key lookups.
func TestLookups(t *testing.T) {
	apitest.ForEachDB(t, func(t *testing.T, b apitest.Backend) { lookups(t, b) })
}

func lookups(t *testing.T, b apitest.Backend) {
	st := apitest.Open(t, apitest.DSN(t, b))
	fleet(t, st, 3)
	ctx := context.Background()
	m := st.Client.Machine.Query().FirstX(ctx)
	n := st.Client.NIC.Query().FirstX(ctx)
	srv := apitest.Serve(t, st)
	var got struct {
		Machine  struct{ ID string }
		Site     struct{ Name string }
		NicByMAC struct{ Machine struct{ Name string } } `json:"nicByMAC"`
		Missing  *struct{ ID string }
	}
	srv.Query(t, `query($name: String!, $mac: String!) { machine(name: $name) { id } site(name: "dc1") { name }
		nicByMAC(mac: $mac) { machine { name } } missing: machine(name: "nope.example") { id } }`,
		map[string]any{"name": strings.ToUpper(m.Name), "mac": strings.ToUpper(strings.ReplaceAll(n.MAC, ":", "-"))}, &got)
	owner := st.Client.Machine.GetX(ctx, n.MachineID)
	if got.Machine.ID != fmt.Sprint(m.ID) || got.Site.Name != "dc1" || got.NicByMAC.Machine.Name != owner.Name || got.Missing != nil {
		t.Fatalf("lookups = %+v", got)
	}
}

// The events query pages the log in seq order with a working cursor and filters.
func TestEventsQueryPages(t *testing.T) {
	apitest.ForEachDB(t, func(t *testing.T, b apitest.Backend) {
		st := apitest.Open(t, apitest.DSN(t, b))
		fleet(t, st, 5)
		srv := apitest.Serve(t, st)
		ctx := context.Background()
		total, err := events.LastSeq(ctx, st.Client)
		if err != nil {
			t.Fatal(err)
		}
		after, seen := 0, 0
		for {
			var got struct {
				Events struct {
					LastSeq int
					HasMore bool
					Events  []struct{ Seq int }
				}
			}
			srv.Query(t, `query($a: Int) { events(after: $a, first: 7) { lastSeq hasMore events { seq } } }`, map[string]any{"a": after}, &got)
			for _, e := range got.Events.Events {
				seen++
				if e.Seq != after+1 {
					t.Fatalf("seq %d after %d", e.Seq, after)
				}
				after = e.Seq
			}
			if got.Events.LastSeq != after {
				t.Fatalf("lastSeq = %d, want %d", got.Events.LastSeq, after)
			}
			if !got.Events.HasMore {
				break
			}
		}
		if int64(seen) != total {
			t.Fatalf("paged %d events, log has %d", seen, total)
		}
		var nics struct {
			Events struct{ Events []struct{ Kind string } }
		}
		srv.Query(t, `{ events(first: 1000, filter: {kinds: ["nic.created"]}) { events { kind } } }`, nil, &nics)
		if want := st.Client.NIC.Query().CountX(ctx); len(nics.Events.Events) != want {
			t.Fatalf("nic.created events = %d, want %d", len(nics.Events.Events), want)
		}
	})
}

// Pathologically deep queries and oversized bodies are refused before they run.
func TestQueryLimits(t *testing.T) {
	st := apitest.Open(t, apitest.DSN(t, apitest.SQLite))
	srv := apitest.Serve(t, st)
	deep := "id"
	for i := 0; i < 10; i++ {
		deep = "parents { edges { node { " + deep + " } } }"
	}
	resp, err := srv.Do("{ nodeRoles { edges { node { "+deep+" } } } }", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Errors) == 0 || !strings.Contains(resp.Errors[0].Message, "nested") {
		t.Fatalf("deep query: %+v", resp.Errors)
	}
	// The deepest real query still passes.
	srv.Query(t, topology, nil, nil)
	huge := "{ sites { totalCount } }" + strings.Repeat(" ", 2<<20)
	if resp, err := srv.Do(huge, nil); err == nil && len(resp.Errors) == 0 {
		t.Fatalf("a 2 MiB request was accepted")
	}
}
