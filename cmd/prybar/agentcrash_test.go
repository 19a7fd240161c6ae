package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/agenttask"
	"github.com/prybar/prybar/ent/event"
	"github.com/prybar/prybar/ent/machine"
	"github.com/prybar/prybar/ent/noderole"
	entrun "github.com/prybar/prybar/ent/run"
	"github.com/prybar/prybar/internal/secret"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/ipxe"
)

// crashRoles is the operator's role catalogue the crash test loads: an agent-task role without
// requirements. The built-in agent-script role requires pxe-discover, which requires
// bmc-discover — a BMC this test has no reason to simulate; the executor, the agent protocol and
// the annealer's recovery are the same either way.
const crashRoles = `roles:
  - name: crash-script
    description: Run a script on the machine's agent (the crash test's role).
    executor: agent-task
    timeout: 5m
    attributes:
      type: object
      properties:
        script: {type: string}
        task_timeout: {type: string, format: duration, default: 1m}
`

// lockedBuffer is a bytes.Buffer a child process writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// buildAgent builds the prybar-agent program into dir.
func buildAgent(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "prybar-agent")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/prybar/prybar/cmd/prybar-agent").CombinedOutput()
	if err != nil {
		t.Fatalf("go build prybar-agent: %v\n%s", err, out)
	}
	return bin
}

// Crash (issue 9): an operator binds an agent-task role to a machine whose agent has checked in
// and commits it; the annealer in `prybar serve` queues the role's script for the agent; serve is
// SIGKILLed while the agent runs it (its effect already written) and started again on the same
// database and address. The agent (the real prybar-agent program) keeps running the script,
// delivers its result to the new server (retrying while it is away), the new server's recovery
// re-runs the interrupted node-role without queuing the script again, and the node-role ends
// ACTIVE with the effect applied once. Two orders: the new server is up while the script still
// runs (its re-run waits for the task), or only after the agent failed to deliver the result.
func TestAgentSurvivesServerCrash(t *testing.T) {
	t.Run("restart while the script runs", func(t *testing.T) { agentCrash(t, true) })
	t.Run("restart after the delivery failed", func(t *testing.T) { agentCrash(t, false) })
}

func agentCrash(t *testing.T, early bool) {
	dir := t.TempDir()
	db, keyPath := filepath.Join(dir, "prybar.db"), filepath.Join(dir, "prybar.key")
	key, err := secret.LoadOrCreateKey(keyPath)
	must(t, err)
	agentBin := buildAgent(t, dir)

	rolesDir := filepath.Join(dir, "roles")
	must(t, os.Mkdir(rolesDir, 0o755))
	must(t, os.WriteFile(filepath.Join(rolesDir, "crash.yaml"), []byte(crashRoles), 0o644))
	runCLI(t, "roles", "load", "--db", db, rolesDir)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := ln.Addr().String()
	ln.Close()
	args := []string{"--db", db, "--secret-key-file", keyPath, "--listen", addr}
	srv := startServe(t, args...) // the annealer runs (PRYBAR_SCHEDULER unset)

	// The machine as an operator records it, with the NIC the agent's fixture reports.
	var cm struct {
		CreateMachine struct {
			Machine struct{ ID string }
			Errors  []struct{ Code, Message string }
		}
	}
	gql(t, srv.URL, `mutation { createMachine(input: {name: "vm.crash.example"}) { machine { id } errors { code message } } }`, &cm)
	if len(cm.CreateMachine.Errors) > 0 {
		t.Fatalf("createMachine: %+v", cm.CreateMachine.Errors)
	}
	machineID, err := strconv.Atoi(cm.CreateMachine.Machine.ID)
	must(t, err)
	gql(t, srv.URL, fmt.Sprintf(`mutation { createNIC(input: {machineID: %d, mac: "52:54:00:12:34:01"}) { errors { code message } } }`, machineID), nil)

	// The agent, as the discovery image starts it, pointed at the server by its command line.
	tok := ipxe.Tokens{Key: bootTokenKey(key)}.IssueAgent(machineID, "", "crash1", time.Now())
	agentLog := &lockedBuffer{}
	agentCmd := exec.Command(agentBin, "-root", "../../provision/agent/testdata/qemu-vm",
		"-cmdline", fmt.Sprintf("prybar.url=http://%s prybar.machine=%d prybar.token=%s prybar.trace=crash1 prybar.mac=52:54:00:12:34:01", addr, machineID, tok))
	agentCmd.Stdout, agentCmd.Stderr = agentLog, agentLog
	must(t, agentCmd.Start())
	agentExit := make(chan error, 1)
	go func() { agentExit <- agentCmd.Wait() }()
	t.Cleanup(func() {
		if agentCmd.ProcessState == nil {
			agentCmd.Process.Kill()
			<-agentExit
		}
	})

	st, err := store.Open(context.Background(), db)
	must(t, err)
	defer st.Close()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if m, err := st.Client.Machine.Get(context.Background(), machineID); err == nil && m.Alive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not check in; agent log:\n%s", agentLog)
		}
	}

	// Bind, configure and commit the role through the API, as an operator would.
	effects := filepath.Join(dir, "effects")
	var br struct {
		BindRole struct {
			NodeRole struct{ ID, State string }
			Errors   []struct{ Code, Message string }
		}
	}
	gql(t, srv.URL, fmt.Sprintf(`mutation { bindRole(machineID: %d, role: "crash-script") { nodeRole { id state } errors { code message } } }`, machineID), &br)
	if len(br.BindRole.Errors) > 0 {
		t.Fatalf("bindRole: %+v", br.BindRole.Errors)
	}
	nrID := br.BindRole.NodeRole.ID
	// The script is a template: the effect line names the machine, so the rendering is exercised.
	// Early: long enough for serve to be back before the script ends, even on a loaded machine.
	sleep := 3
	if early {
		sleep = 12
	}
	script := fmt.Sprintf("echo started; echo {{.machine.name}} >> %s; sleep %d; echo finished", effects, sleep)
	var errs struct {
		SetAttribute, CommitNodeRole struct {
			Errors []struct{ Code, Message string }
		}
	}
	gql(t, srv.URL, fmt.Sprintf(`mutation { setAttribute(nodeRoleID: %s, path: "/script", value: %q) { errors { code message } } }`, nrID, script), &errs)
	gql(t, srv.URL, fmt.Sprintf(`mutation { commitNodeRole(id: %s) { errors { code message } } }`, nrID), &errs)
	if len(errs.SetAttribute.Errors)+len(errs.CommitNodeRole.Errors) > 0 {
		t.Fatalf("setAttribute/commitNodeRole: %+v", errs)
	}

	// Kill the server once the task runs (its effect written).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if data, _ := os.ReadFile(effects); len(data) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the task did not start; server log:\n%s\nagent log:\n%s", srv.out.String(), agentLog)
		}
	}
	srv.kill() // SIGKILL
	killed := time.Now()
	nodeRoleID, err := strconv.Atoi(nrID)
	must(t, err)
	nr, err := st.Client.NodeRole.Get(context.Background(), nodeRoleID)
	must(t, err)
	if nr.State != noderole.StateTRANSITION {
		t.Fatalf("node-role %s when the server was killed, want TRANSITION", nr.State)
	}
	if m, err := st.Client.Machine.Get(context.Background(), machineID); err != nil || m.State != machine.StateBUSY {
		t.Fatalf("machine state when the server was killed: %v %v, want BUSY", m, err)
	}
	// Late: restart only once the agent has failed to deliver the result, so it must reconnect.
	for deadline := time.Now().Add(30 * time.Second); !early && !strings.Contains(agentLog.String(), "what=result"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not try to deliver the result; agent log:\n%s", agentLog)
		}
	}
	srv2 := startServe(t, args...)
	if early {
		// The new server's re-run must be waiting on the task the killed one queued, not
		// queue another, while the agent still runs the script.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			n, err := st.Client.Run.Query().Where(entrun.NodeRoleID(nodeRoleID), entrun.StatusEQ(entrun.StatusRUNNING)).Count(context.Background())
			must(t, err)
			if n == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no re-run after the restart; server log:\n%s", srv2.out.String())
			}
		}
		if strings.Contains(agentLog.String(), "what=result") {
			t.Fatalf("the script ended before the re-run started (machine too slow for this case); agent log:\n%s", agentLog)
		}
	}

	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		nr, err = st.Client.NodeRole.Get(context.Background(), nodeRoleID)
		if err == nil && (nr.State == noderole.StateACTIVE || nr.State == noderole.StateERROR) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node-role did not settle after the restart (state %v); server log:\n%s\nagent log:\n%s", nr.State, srv2.out.String(), agentLog)
		}
	}
	t.Logf("node-role %s %s after the kill; the agent retried delivering the result %d times while the server was away",
		nr.State, time.Since(killed).Round(time.Millisecond), strings.Count(agentLog.String(), "what=result"))
	if nr.State != noderole.StateACTIVE {
		t.Errorf("node-role after the crash: %s (%s), want ACTIVE", nr.State, nr.Status)
	}
	select {
	case err := <-agentExit:
		t.Errorf("the agent exited: %v\n%s", err, agentLog)
	default:
	}

	ctx := context.Background()
	tasks, err := st.Client.AgentTask.Query().Where(agenttask.NodeRoleID(nodeRoleID)).All(ctx)
	must(t, err)
	if len(tasks) != 1 {
		t.Fatalf("%d agent tasks queued for the node-role, want 1 (the recovery queued the script again)", len(tasks))
	}
	tk := tasks[0]
	if tk.State != agenttask.StateDONE || tk.ExitCode == nil || *tk.ExitCode != 0 || tk.Output != "started\nfinished\n" {
		t.Errorf("task after the crash: %s exit %v output %q", tk.State, tk.ExitCode, tk.Output)
	}
	if data, _ := os.ReadFile(effects); string(data) != "vm.crash.example\n" {
		t.Errorf("effects file %q: the task's effect happened %d times, want once", data, strings.Count(string(data), "\n"))
	}
	if n, _ := st.Client.Event.Query().Where(event.Kind("agent.task.end")).Count(ctx); n != 1 {
		t.Errorf("%d agent.task.end events, want 1", n)
	}
	// The run the killed server owned was abandoned; the new server's re-run found the task and
	// waited for it.
	runs, err := st.Client.Run.Query().Where(entrun.NodeRoleID(nodeRoleID)).Order(ent.Asc(entrun.FieldID)).All(ctx)
	must(t, err)
	var statuses []string
	for _, r := range runs {
		statuses = append(statuses, string(r.Status))
	}
	if got := strings.Join(statuses, ","); got != "ABANDONED,SUCCEEDED" {
		t.Errorf("runs of the node-role: %s, want ABANDONED,SUCCEEDED", got)
	}
	if wall, _ := nr.Wall["agent_task"].(map[string]any); wall == nil || wall["output"] != "started\nfinished\n" {
		t.Errorf("node-role wall %v: want the task's output under agent_task", nr.Wall)
	}
	m, err := st.Client.Machine.Get(ctx, machineID)
	must(t, err)
	if m.State != machine.StateREADY {
		t.Errorf("machine state %s, want READY (its only node-role ACTIVE)", m.State)
	}
}
