package graph_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/machine"
	"github.com/prybar/prybar/ent/noderole"
	"github.com/prybar/prybar/ent/operation"
	"github.com/prybar/prybar/graph"
	"github.com/prybar/prybar/internal/apitest"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/scheduler"
	"github.com/prybar/prybar/scheduler/catalog"
	"github.com/prybar/prybar/scheduler/executor"
)

type semEnv struct {
	t  *testing.T
	st interface {
		Tx(context.Context, func(context.Context, *ent.Tx) error) error
	}
	c   *ent.Client
	srv *apitest.Server
}

func newSemEnv(t *testing.T) (*semEnv, *scheduler.Annealer) {
	st := apitest.Open(t, apitest.DSN(t, apitest.SQLite))
	fleet(t, st, 2)
	ctx := events.WithActor(context.Background(), "test")
	if err := st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		return tx.Machine.Update().SetAlive(true).Exec(ctx)
	}); err != nil {
		t.Fatal(err)
	}
	a := scheduler.New(st, executor.NewRegistry(executor.Noop{}, &executor.Test{}), scheduler.Options{Log: apitest.Quiet(), Sweep: 100 * time.Millisecond})
	if _, err := a.LoadRoles(ctx, catalog.Builtin()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.EnsureSystem(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Stop)
	return &semEnv{t: t, st: st, c: st.Client, srv: apitest.ServeWith(t, st, graph.Options{Annealer: a})}, a
}

// errs runs a mutation whose payload field is name and returns its errors.
func (e *semEnv) mutate(name, q string, vars map[string]any) []domainErr {
	e.t.Helper()
	var out map[string]struct {
		Errors []domainErr
	}
	e.srv.Query(e.t, q, vars, &out)
	return out[name].Errors
}

func (e *semEnv) deployment(name string) int {
	e.t.Helper()
	var out struct {
		CreateDeployment struct {
			Deployment struct {
				ID int `json:"id,string"`
			}
			Errors []domainErr
		}
	}
	e.srv.Query(e.t, `mutation($n: String!) { createDeployment(name: $n) { deployment { id } errors { field code message } } }`,
		map[string]any{"n": name}, &out)
	if len(out.CreateDeployment.Errors) > 0 {
		e.t.Fatalf("createDeployment: %+v", out.CreateDeployment.Errors)
	}
	return out.CreateDeployment.Deployment.ID
}

func (e *semEnv) bind(m int, role string, dep int) int {
	e.t.Helper()
	var out struct {
		BindRole struct {
			NodeRole struct {
				ID int `json:"id,string"`
			}
			Errors []domainErr
		}
	}
	e.srv.Query(e.t, `mutation($m: ID!, $r: String!, $d: ID) { bindRole(machineID: $m, role: $r, deploymentID: $d) { nodeRole { id } errors { field code message } } }`,
		map[string]any{"m": m, "r": role, "d": dep}, &out)
	if len(out.BindRole.Errors) > 0 {
		e.t.Fatalf("bindRole: %+v", out.BindRole.Errors)
	}
	return out.BindRole.NodeRole.ID
}

func (e *semEnv) commit(dep int) {
	e.t.Helper()
	if errs := e.mutate("commitDeployment", `mutation($id: ID!) { commitDeployment(id: $id) { errors { field code message } } }`, map[string]any{"id": dep}); len(errs) > 0 {
		e.t.Fatalf("commit: %+v", errs)
	}
}

func (e *semEnv) waitState(nr int, want noderole.State) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		n, err := e.c.NodeRole.Get(context.Background(), nr)
		if err != nil {
			e.t.Fatal(err)
		}
		if n.State == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("node-role %d did not reach %s", nr, want)
}

// kinds returns the event kinds written after seq.
func (e *semEnv) kinds(after int64) map[string]int {
	e.t.Helper()
	evs, err := e.c.Event.Query().All(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]int{}
	for _, ev := range evs {
		if ev.Seq > after {
			out[ev.Kind]++
		}
	}
	return out
}

// TestAttributeCatalogue: the attributes roles declare are listed with role, path, schema,
// description and default, with the values set on node-roles and deployments; setting a path no
// schema declares is refused with a domain error naming the path.
func TestAttributeCatalogue(t *testing.T) {
	e, _ := newSemEnv(t)
	ms := e.c.Machine.Query().Order(ent.Asc(machine.FieldID)).IDsX(context.Background())
	dep := e.deployment("attrs")
	nr := e.bind(ms[0], "test-step", dep)
	base := e.bind(ms[0], "noop-base", dep)

	set := `mutation($nr: ID, $d: ID, $r: String, $p: String!, $v: Any) { setAttribute(nodeRoleID: $nr, deploymentID: $d, role: $r, path: $p, value: $v) { errors { field code message } } }`
	if errs := e.mutate("setAttribute", set, map[string]any{"nr": nr, "p": "/delay", "v": "5ms"}); len(errs) > 0 {
		t.Fatalf("set /delay: %+v", errs)
	}
	if errs := e.mutate("setAttribute", set, map[string]any{"d": dep, "r": "test-step", "p": "effect", "v": "marker"}); len(errs) > 0 {
		t.Fatalf("set deployment effect: %+v", errs)
	}
	// noop-base declares no attributes at all: any path is refused (today it was stored silently).
	errs := e.mutate("setAttribute", set, map[string]any{"nr": base, "p": "/colour", "v": "blue"})
	if len(errs) != 1 || errs[0].Code != "INVALID" || errs[0].Field != "path" || !strings.Contains(errs[0].Message, "/colour") {
		t.Fatalf("undeclared path on noop-base: %+v", errs)
	}
	// bmc-discover's schema is open (no additionalProperties: false): still refused, and the error lists what is declared.
	disc := e.bind(ms[1], "bmc-discover", dep)
	errs = e.mutate("setAttribute", set, map[string]any{"nr": disc, "p": "/actoin", "v": "inventory"})
	if len(errs) != 1 || errs[0].Code != "INVALID" || !strings.Contains(errs[0].Message, "/action") {
		t.Fatalf("undeclared path on bmc-discover: %+v", errs)
	}
	if n, _ := e.c.NodeRole.Query().Where(noderole.ID(base)).Only(context.Background()); len(n.ProposedData) != 0 {
		t.Fatalf("refused value was stored: %v", n.ProposedData)
	}

	var out struct {
		Attributes struct {
			TotalCount int
			Edges      []struct {
				Node struct {
					Name, Role, Path, Description string
					Schema                        map[string]any
					Default                       map[string]any
					Values                        []struct {
						Layer    string
						Proposed bool
						Value    any
						NodeRole *struct {
							ID int `json:"id,string"`
						}
						Deployment struct{ Name string }
					}
				}
			}
		}
	}
	e.srv.Query(t, `{ attributes(where: {role: "test-step"}, orderBy: {field: NAME}) { totalCount edges { node {
		name role path description schema default values { layer proposed value nodeRole { id } deployment { name } } } } } }`, nil, &out)
	byPath := map[string]int{}
	for i, ed := range out.Attributes.Edges {
		byPath[ed.Node.Path] = i
	}
	for _, p := range []string{"/delay", "/effect", "/fail", "/fail_rate"} {
		if _, ok := byPath[p]; !ok {
			t.Fatalf("test-step attribute %s missing from the catalogue: %+v", p, out.Attributes.Edges)
		}
	}
	delay := out.Attributes.Edges[byPath["/delay"]].Node
	if delay.Name != "test-step:/delay" || delay.Role != "test-step" || delay.Description == "" ||
		delay.Default["value"] != "0s" || delay.Schema["type"] != "string" {
		t.Errorf("delay: %+v", delay)
	}
	if len(delay.Values) != 1 || delay.Values[0].Layer != "NODEROLE" || !delay.Values[0].Proposed ||
		delay.Values[0].Value != "5ms" || delay.Values[0].NodeRole == nil || delay.Values[0].NodeRole.ID != nr {
		t.Errorf("delay values: %+v", delay.Values)
	}
	effect := out.Attributes.Edges[byPath["/effect"]].Node
	if len(effect.Values) != 1 || effect.Values[0].Layer != "DEPLOYMENT" || effect.Values[0].Deployment.Name != "attrs" || effect.Values[0].Value != "marker" {
		t.Errorf("effect values: %+v", effect.Values)
	}
}

// TestDeleteSemantics: a machine with history (an operation, runs, ACTIVE node-roles) is deleted
// with it; a deployment is deleted with its node-roles and runs, and its machines' state is
// re-derived; a node-role in TRANSITION blocks both, named in the error; system cannot go. Every
// removed record is an event.
func TestDeleteSemantics(t *testing.T) {
	e, _ := newSemEnv(t)
	ctx := events.WithActor(context.Background(), "test")
	ms := e.c.Machine.Query().Order(ent.Asc(machine.FieldID)).AllX(ctx)
	del := func(name string, id int) []domainErr {
		t.Helper()
		return e.mutate(name, `mutation($id: ID!) { `+name+`(id: $id) { deletedID errors { field code message } } }`, map[string]any{"id": id})
	}

	// A deployment that ran: deleting it removes its node-roles and runs; the machine goes back to NEW.
	d1 := e.deployment("d1")
	nr := e.bind(ms[0].ID, "test-step", d1)
	e.commit(d1)
	e.waitState(nr, noderole.StateACTIVE)
	if m := e.c.Machine.GetX(ctx, ms[0].ID); m.State != machine.StateREADY {
		t.Fatalf("machine after its node-role is ACTIVE: %s", m.State)
	}
	seq, _ := events.LastSeq(ctx, e.c)
	if errs := del("deleteDeployment", d1); len(errs) > 0 {
		t.Fatalf("deleteDeployment: %+v", errs)
	}
	k := e.kinds(seq)
	if k["deployment.deleted"] != 1 || k["noderole.deleted"] != 1 || k["run.deleted"] < 1 {
		t.Errorf("events of deleteDeployment: %v", k)
	}
	if m := e.c.Machine.GetX(ctx, ms[0].ID); m.State != machine.StateNEW {
		t.Errorf("machine after its only deployment was deleted: %s, want NEW", m.State)
	}
	if errs := del("deleteDeployment", d1); len(errs) != 1 || errs[0].Code != "NOT_FOUND" {
		t.Errorf("second delete: %+v", errs)
	}
	sys := e.c.Deployment.Query().FirstX(ctx)
	if errs := del("deleteDeployment", sys.ID); len(errs) != 1 || errs[0].Code != "CONFLICT" || !strings.Contains(errs[0].Message, "system") {
		t.Errorf("delete system: %+v", errs)
	}

	// A machine with history: a finished power operation and an ACTIVE node-role with its run.
	d2 := e.deployment("d2")
	nr = e.bind(ms[0].ID, "test-step", d2)
	e.commit(d2)
	e.waitState(nr, noderole.StateACTIVE)
	if err := e.st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		return tx.Operation.Create().SetMachineID(ms[0].ID).SetAction("power-on").SetState(operation.StateSUCCEEDED).Exec(ctx)
	}); err != nil {
		t.Fatal(err)
	}
	seq, _ = events.LastSeq(ctx, e.c)
	if errs := del("deleteMachine", ms[0].ID); len(errs) > 0 {
		t.Fatalf("deleteMachine with history: %+v", errs)
	}
	k = e.kinds(seq)
	if k["machine.deleted"] != 1 || k["operation.deleted"] != 1 || k["noderole.deleted"] != 1 || k["run.deleted"] < 1 || k["nic.deleted"] < 1 {
		t.Errorf("events of deleteMachine: %v", k)
	}

	// A node-role in TRANSITION blocks deleting its machine and its deployment, and is named.
	d3 := e.deployment("d3")
	nr = e.bind(ms[1].ID, "test-step", d3)
	set := `mutation($nr: ID, $p: String!, $v: Any) { setAttribute(nodeRoleID: $nr, path: $p, value: $v) { errors { field code message } } }`
	if errs := e.mutate("setAttribute", set, map[string]any{"nr": nr, "p": "/delay", "v": "3s"}); len(errs) > 0 {
		t.Fatal(errs)
	}
	e.commit(d3)
	e.waitState(nr, noderole.StateTRANSITION)
	for _, c := range []struct {
		mut string
		id  int
		who string
	}{{"deleteMachine", ms[1].ID, "machine " + ms[1].Name}, {"deleteDeployment", d3, "deployment d3"}} {
		errs := del(c.mut, c.id)
		if len(errs) != 1 || errs[0].Code != "CONFLICT" || !strings.Contains(errs[0].Message, c.who) ||
			!strings.Contains(errs[0].Message, "(test-step) in TRANSITION") {
			t.Errorf("%s while running: %+v", c.mut, errs)
		}
	}
	e.waitState(nr, noderole.StateACTIVE)
	if errs := del("deleteDeployment", d3); len(errs) > 0 {
		t.Errorf("deleteDeployment once finished: %+v", errs)
	}
}
