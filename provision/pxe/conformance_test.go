package pxe_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/role"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/agent"
	"github.com/prybar/prybar/provision/agentapi"
	"github.com/prybar/prybar/provision/ipxe"
	"github.com/prybar/prybar/provision/pxe"
	"github.com/prybar/prybar/scheduler/executor"
	"github.com/prybar/prybar/scheduler/executor/executortest"
)

// lab is a real store, the agent protocol server and a real agent (provision/agent's runner,
// running scripts with /bin/sh) registered for one machine, in-process.
type lab struct {
	st      *store.Store
	backend *agentapi.Backend
	machine int
	silent  int // a second machine: no agent, no callback
	dir     string
	stop    chan struct{}
}

func newLab(t *testing.T, startAgent bool) *lab {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(context.Background(), filepath.Join(dir, "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := events.WithActor(context.Background(), "test")
	if _, err := ipxe.Load(ctx, st, ipxe.BuiltinCatalog()); err != nil {
		t.Fatal(err)
	}
	tok := ipxe.Tokens{Key: []byte("k")}
	srv := &agentapi.Server{Store: st, Tokens: tok, MaxWait: time.Second}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	l := &lab{st: st, backend: &agentapi.Backend{Server: srv}, dir: dir, stop: make(chan struct{})}
	t.Cleanup(func() { close(l.stop) })
	if err := st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		m, err := tx.Machine.Create().SetName("vm.lab.example").Save(ctx)
		if err != nil {
			return err
		}
		l.machine = m.ID
		q, err := tx.Machine.Create().SetName("silent.lab.example").Save(ctx)
		if err != nil {
			return err
		}
		l.silent = q.ID
		return tx.NIC.Create().SetMachineID(m.ID).SetMAC("52:54:00:12:34:01").Exec(ctx)
	}); err != nil {
		t.Fatal(err)
	}
	if !startAgent {
		return l
	}
	inv, err := agent.Collect("../agent/testdata/qemu-vm")
	if err != nil {
		t.Fatal(err)
	}
	c := &agent.Client{Base: ts.URL, Token: tok.IssueAgent(l.machine, "", "boot1", time.Now()), Backoff: 50 * time.Millisecond}
	actx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	if _, err := c.Register(actx, agent.Register{Trace: "boot1", Inventory: inv}); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(done)
		_ = (&agent.Runner{Client: c, ChunkEvery: 100 * time.Millisecond}).Loop(actx)
	}()
	return l
}

// in is an input for run of a fresh node-role of the machine (nodeRole only names it in the
// test: each call creates its own real node-role, as the agent task records which one queued it).
func (l *lab) in(run, nodeRole int, attrs map[string]any) executor.Input {
	return l.inOn(l.machine, run, nodeRole, attrs)
}

func (l *lab) inOn(machineID, run, nodeRole int, attrs map[string]any) executor.Input {
	var nr int
	ctx := events.WithActor(context.Background(), "test")
	err := l.st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		r, err := tx.Role.Query().Where(role.Name("write-file")).Only(ctx)
		if ent.IsNotFound(err) {
			r, err = tx.Role.Create().SetName("write-file").SetExecutor("agent-task").Save(ctx)
		}
		if err != nil {
			return err
		}
		d, err := tx.Deployment.Create().SetName(fmt.Sprintf("d%d-%d", run, nodeRole)).Save(ctx)
		if err != nil {
			return err
		}
		n, err := tx.NodeRole.Create().SetMachineID(machineID).SetRoleID(r.ID).SetDeploymentID(d.ID).Save(ctx)
		if err == nil {
			nr = n.ID
		}
		return err
	})
	if err != nil {
		panic(err)
	}
	return executor.Input{RunID: run, NodeRoleID: nr, Role: "write-file", Machine: executor.Machine{ID: machineID, Name: "vm.lab.example"}, Attrs: attrs}
}

// agent-task: the role's script, rendered with the attributes, runs on the agent once.
func TestAgentTaskConformance(t *testing.T) {
	executortest.Run(t, func(t *testing.T) executortest.Case {
		l := newLab(t, true)
		effects := filepath.Join(l.dir, "effects")
		slow := l.in(2, 2, map[string]any{"script": "sleep 60"})
		return executortest.Case{
			Exec:  pxe.AgentTask{Backend: l.backend},
			Quick: l.in(1, 1, map[string]any{"script": "echo {{.word}} >> {{.file}}", "word": "effect", "file": effects}),
			Slow:  &slow,
			Effects: func(t *testing.T, in executor.Input) int {
				data, _ := os.ReadFile(effects)
				return strings.Count(string(data), "effect\n")
			},
		}
	})
}

func TestAgentTaskRendersAndFails(t *testing.T) {
	l := newLab(t, true)
	ex := pxe.AgentTask{Backend: l.backend}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := ex.Run(ctx, l.in(1, 1, map[string]any{"script": "echo {{.machine.name}} {{.greeting}}", "greeting": "hello"}))
	if err != nil || res.Log != "vm.lab.example hello\n" {
		t.Fatalf("rendered script: %q %v", res.Log, err)
	}
	if _, err := ex.Run(ctx, l.in(2, 2, map[string]any{"script": "echo {{.missing}}"})); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("a script naming a missing attribute: %v", err)
	}
	if _, err := ex.Run(ctx, l.in(3, 3, map[string]any{"script": "exit 7"})); err == nil || !strings.Contains(err.Error(), "exit 7") {
		t.Errorf("a failing script: %v", err)
	}
}

// pxe-discover (no BMC here: the agent checks in by itself) sets the discovery bootenv and waits
// for the check-in; the slow case is a machine whose agent never checks in.
func TestPXEDiscoverConformance(t *testing.T) {
	executortest.Run(t, func(t *testing.T) executortest.Case {
		l := newLab(t, false)
		ex := pxe.Discover{Backend: l.backend}
		go func() {
			// The machine "boots" and its agent registers a little later, again for each run.
			for {
				select {
				case <-l.stop:
					return
				case <-time.After(300 * time.Millisecond):
					l.checkIn()
				}
			}
		}()
		slow := l.inOn(l.silent, 2, 2, nil)
		return executortest.Case{Exec: ex, Quick: l.in(1, 1, nil), Slow: &slow}
	})
}

// checkIn records an agent check-in the way registration does.
func (l *lab) checkIn() {
	mid := l.machine
	_ = l.st.Tx(events.WithActor(context.Background(), "agent"), func(ctx context.Context, tx *ent.Tx) error {
		return events.Emit(ctx, "agent.registered", "machine", mid, &mid, map[string]any{"trace": "t"})
	})
}

// os-install and local-boot: the completion callback (here: the bootenv flipped as /boot/done
// does) ends the install; local-boot sets local.
func TestOSInstallConformance(t *testing.T) {
	executortest.Run(t, func(t *testing.T) executortest.Case {
		l := newLab(t, false)
		go func() {
			for {
				select {
				case <-l.stop:
					return
				case <-time.After(200 * time.Millisecond):
					// What /boot/done does when the installer calls back.
					_, _ = (&ipxe.DB{Store: l.st}).Done(context.Background(), l.machine, "debian-12-install")
				}
			}
		}()
		slow := l.inOn(l.silent, 2, 2, map[string]any{"bootenv": "debian-12-install"})
		return executortest.Case{Exec: pxe.Install{Backend: l.backend}, Quick: l.in(1, 1, map[string]any{"bootenv": "debian-12-install"}), Slow: &slow}
	})
}

func TestLocalBootConformance(t *testing.T) {
	executortest.Run(t, func(t *testing.T) executortest.Case {
		l := newLab(t, false)
		return executortest.Case{Exec: pxe.LocalBoot{Backend: l.backend}, Quick: l.in(1, 1, nil)}
	})
}
