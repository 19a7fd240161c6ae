package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/agenttask"
	"github.com/prybar/prybar/ent/event"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/internal/secret"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/agent"
	"github.com/prybar/prybar/provision/agentapi"
	"github.com/prybar/prybar/provision/ipxe"
)

// Crash: `prybar serve` is SIGKILLed while the agent runs a task and started again on the same
// database and address. The agent keeps running the task, delivers its result to the new server
// (retrying with backoff while it is away), and the task's effect happens once.
func TestAgentSurvivesServerCrash(t *testing.T) {
	dir := t.TempDir()
	db, keyPath := filepath.Join(dir, "prybar.db"), filepath.Join(dir, "prybar.key")
	key, err := secret.LoadOrCreateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx := events.WithActor(context.Background(), "test")
	st, err := store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var machineID int
	must(t, st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		m, err := tx.Machine.Create().SetName("vm.crash.example").Save(ctx)
		if err != nil {
			return err
		}
		machineID = m.ID
		return tx.NIC.Create().SetMachineID(m.ID).SetMAC("52:54:00:12:34:01").Exec(ctx)
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := ln.Addr().String()
	ln.Close()
	args := []string{"--db", db, "--secret-key-file", keyPath, "--listen", addr}
	env := []string{"PRYBAR_SCHEDULER=off"}
	srv := startServeEnv(t, env, args...)

	inv, err := agent.Collect("../../provision/agent/testdata/qemu-vm")
	must(t, err)
	tok := ipxe.Tokens{Key: bootTokenKey(key)}
	c := &agent.Client{Base: "http://" + addr, Token: tok.IssueAgent(machineID, "", "crash1", time.Now()), Backoff: 500 * time.Millisecond}
	actx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := c.Register(actx, agent.Register{Trace: "crash1", Inventory: inv}); err != nil {
		t.Fatal(err)
	}
	loopDone := make(chan error, 1)
	go func() { loopDone <- (&agent.Runner{Client: c, ChunkEvery: 200 * time.Millisecond}).Loop(actx) }()

	effects := filepath.Join(dir, "effects")
	var taskID int
	must(t, st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
		tk, err := agentapi.Queue(ctx, tx, machineID, nil, "crash-task", agent.KindScript, "echo started; echo x >> "+effects+"; sleep 4; echo finished", time.Minute)
		if err == nil {
			taskID = tk.ID
		}
		return err
	}))
	// Kill the server once the task runs (its effect written).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if data, _ := os.ReadFile(effects); len(data) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the task did not start; server log:\n%s", srv.out.String())
		}
	}
	srv.kill() // SIGKILL
	time.Sleep(time.Second)
	srv2 := startServeEnv(t, env, args...)
	var tk *ent.AgentTask
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		tk, err = st.Client.AgentTask.Get(context.Background(), taskID)
		if err == nil && tk.State != agenttask.StateRUNNING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the task did not finish after the restart (state %v); server log:\n%s", tk.State, srv2.out.String())
		}
	}
	cancel()
	<-loopDone
	if tk.State != agenttask.StateDONE || tk.ExitCode == nil || *tk.ExitCode != 0 || !strings.HasSuffix(tk.Output, "finished\n") {
		t.Errorf("task after the crash: %s exit %v output %q", tk.State, tk.ExitCode, tk.Output)
	}
	if data, _ := os.ReadFile(effects); string(data) != "x\n" {
		t.Errorf("the task's effect happened %d times, want once", strings.Count(string(data), "x"))
	}
	if n, _ := st.Client.Event.Query().Where(event.Kind("agent.task.end")).Count(context.Background()); n != 1 {
		t.Errorf("%d agent.task.end events, want 1", n)
	}
}
