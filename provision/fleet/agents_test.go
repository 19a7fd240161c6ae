package fleet_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prybar/prybar/ent/agenttask"
	"github.com/prybar/prybar/ent/machine"
	"github.com/prybar/prybar/ent/run"
	"github.com/prybar/prybar/graph"
	"github.com/prybar/prybar/internal/apitest"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/internal/secret"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/agentapi"
	"github.com/prybar/prybar/provision/fleet"
	"github.com/prybar/prybar/provision/ipxe"
	"github.com/prybar/prybar/provision/pxe"
	"github.com/prybar/prybar/scheduler"
	"github.com/prybar/prybar/scheduler/catalog"
	"github.com/prybar/prybar/scheduler/executor"
)

// prybar is an in-process Prybar wired as `prybar serve` wires it: GraphQL with the annealer,
// the boot HTTP server (/boot/) and the agent protocol (/agent/) on a second listener, the bmc
// executor and the PXE executors over one agent backend.
type prybar struct {
	st      *store.Store
	api     *apitest.Server
	bootURL string
	a       *scheduler.Annealer
}

func startPrybar(t *testing.T, ctx context.Context) *prybar {
	t.Helper()
	key, err := secret.LoadOrCreateKey(filepath.Join(t.TempDir(), "prybar.key"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "prybar.db"), store.Options{SecretKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := ipxe.Load(events.WithActor(ctx, "bootenvs"), st, ipxe.BuiltinCatalog()); err != nil {
		t.Fatal(err)
	}
	tokens := ipxe.Tokens{Key: []byte("fleet-agents-test-boot-token-key")}
	agentSrv := &agentapi.Server{Store: st, Tokens: tokens, Log: apitest.Quiet()}
	mux := http.NewServeMux()
	mux.Handle("/boot/", &ipxe.Handler{Backend: &ipxe.DB{Store: st, Log: apitest.Quiet()}, Tokens: tokens, Log: apitest.Quiet()})
	mux.Handle("/agent/", agentSrv)
	boot := httptest.NewServer(mux)
	t.Cleanup(boot.Close)

	bmcExec := fastExec(st)
	// The executors' backend has its own agentapi.Server, as in serve: wake-ups reach the agent's
	// long poll through the event feed, not through a shared in-process object.
	backend := &agentapi.Backend{Server: &agentapi.Server{Store: st, Log: apitest.Quiet()}}
	reg := executor.NewRegistry(executor.Noop{}, bmcExec,
		pxe.Discover{Backend: backend, BMC: bmcExec}, pxe.AgentTask{Backend: backend})
	a := scheduler.New(st, reg, scheduler.Options{Log: apitest.Quiet(), Sweep: 200 * time.Millisecond})
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
	api := apitest.ServeWith(t, st, graph.Options{Annealer: a})
	return &prybar{st: st, api: api, bootURL: boot.URL, a: a}
}

// The discover → ready path without VMs: 120 machines (Redfish and IPMI interleaved) known only by
// their BMCs are registered over GraphQL, the built-in chain up to discovered-ready is bound and
// committed, and each machine's BMC PXE-boots it into a simulated agent that registers with the
// inventory its BMC reports and runs the agent-inventory task. Every machine ends READY, matched
// to its own record (no machine created), without drift, with the agent's NICs, serial and UUID
// on its record and the task's simulated output stored.
func TestAgentsDiscoverToReady(t *testing.T) {
	const n = 120
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	p := startPrybar(t, ctx)
	f, err := fleet.Start(fleet.Config{Machines: n, RedfishShare: 0.5, MockupDir: mockupDir(t), PowerDelay: 20 * time.Millisecond,
		Agents: &fleet.AgentConfig{BootURL: p.bootURL, BootDelay: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	o := fleet.RegisterOptions{Token: p.api.Token, Identity: true, Parallelism: 8}
	reg, err := f.Register(ctx, p.api.URL, o)
	if err != nil {
		t.Fatal(err)
	}
	op := fleet.NewOperator(p.api.URL, o)
	dep, err := op.CreateDeployment(ctx, "discover")
	if err != nil {
		t.Fatal(err)
	}
	if err := op.BindChain(ctx, dep, fleet.DiscoveryChain, reg.MachineIDs, nil); err != nil {
		t.Fatal(err)
	}
	if err := op.Commit(ctx, dep); err != nil {
		t.Fatal(err)
	}
	var last fleet.Progress
	for {
		if last, err = op.Progress(ctx); err != nil {
			t.Fatal(err)
		}
		if last.MachineStates["READY"] == n {
			break
		}
		if testing.Verbose() {
			t.Logf("%s; %s", last, f.AgentStats())
		}
		if ctx.Err() != nil {
			t.Fatalf("not all READY: %s; %s; failed: %v", last, f.AgentStats(), last.FailedExamples)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if got := last.NodeRoles["ACTIVE"]; got != 4*n {
		t.Errorf("%d node-roles ACTIVE, want %d (bmc-discover, pxe-discover, agent-inventory, discovered-ready each)", got, 4*n)
	}
	as := f.AgentStats()
	if as.Registered != n || as.Errors != 0 || as.WithDrift != 0 || as.Tasks != n {
		t.Errorf("%s (last error %q)", as, as.LastErrorSeen)
	}
	if c, _ := p.st.Client.Machine.Query().Count(ctx); c != n {
		t.Errorf("%d machines; agents must merge into the BMC-registered ones, not create machines", c)
	}

	for i, b := range f.BMCs {
		id, _ := strconv.Atoi(reg.MachineIDs[i])
		m, err := p.st.Client.Machine.Query().Where(machine.ID(id)).WithNics().Only(ctx)
		if err != nil {
			t.Fatal(err)
		}
		inv, err := f.Inventory(b)
		if err != nil {
			t.Fatal(err)
		}
		st := f.Agent(b)
		if m.State != machine.StateREADY || len(m.Drift) != 0 || m.DiscoveryConflict != "" || st.Machine != id {
			t.Errorf("%s (%s): state %s, drift %v, conflict %q, agent registered as machine %d (want %d)",
				b.Name, b.Protocol, m.State, m.Drift, m.DiscoveryConflict, st.Machine, id)
		}
		var recorded, reported []string
		for _, nic := range m.Edges.Nics {
			recorded = append(recorded, nic.MAC)
		}
		for _, nic := range inv.NICs {
			reported = append(reported, nic.MAC)
		}
		sort.Strings(recorded)
		sort.Strings(reported)
		if !slices.Equal(recorded, reported) || m.Serial != b.Serial || m.UUID != b.UUID {
			t.Errorf("%s (%s): record has NICs %v serial %q UUID %q; the BMC/agent report %v %q %q",
				b.Name, b.Protocol, recorded, m.Serial, m.UUID, reported, b.Serial, b.UUID)
		}
		if b.Protocol == "redfish" {
			// The BMC's inventory is what bmc-discover recorded; the agent agreed with it.
			bmcView, _ := m.Discovery["bmc"].(map[string]any)
			if bmcView == nil || m.CPUCount != inv.CPU.Count || m.MemoryBytes != inv.MemoryBytes {
				t.Errorf("%s: BMC view %v, cpu %d/%d, memory %d/%d", b.Name, bmcView != nil, m.CPUCount, inv.CPU.Count, m.MemoryBytes, inv.MemoryBytes)
			}
		}
		var disks []string
		for _, d := range inv.Disks {
			disks = append(disks, d.Name)
		}
		task, err := p.st.Client.AgentTask.Query().Where(agenttask.MachineID(id), agenttask.Name("agent-inventory")).Only(ctx)
		if err != nil {
			t.Fatalf("%s: agent-inventory task: %v", b.Name, err)
		}
		if task.State != agenttask.StateDONE || strings.Fields(task.Output) == nil || !slices.Equal(strings.Fields(task.Output), disks) {
			t.Errorf("%s: task %s with output %q; want DONE with %v", b.Name, task.State, task.Output, disks)
		}
	}
	// The node-role's run records the output too (the executor's result).
	task, err := p.st.Client.AgentTask.Query().Where(agenttask.Name("agent-inventory")).First(ctx)
	if err != nil || task.NodeRoleID == nil {
		t.Fatalf("agent-inventory task: %v", err)
	}
	runs, err := p.st.Client.Run.Query().Where(run.NodeRoleID(*task.NodeRoleID)).All(ctx)
	if err != nil || len(runs) == 0 {
		t.Fatalf("agent-inventory runs: %v", err)
	}
	if l := runs[len(runs)-1]; !strings.Contains(l.Log, strings.TrimSpace(task.Output)) {
		t.Errorf("the run's log %q lacks the task output %q", l.Log, task.Output)
	}
	t.Logf("%d machines discovered to READY; %s; %s", n, f.Stats(), as)
}
