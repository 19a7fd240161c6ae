package agentapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/ent/agenttask"
	"github.com/prybar/prybar/ent/event"
	"github.com/prybar/prybar/ent/machine"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/agent"
	"github.com/prybar/prybar/provision/agentapi"
	"github.com/prybar/prybar/provision/ipxe"
)

type env struct {
	st  *store.Store
	srv *agentapi.Server
	ts  *httptest.Server
	tok ipxe.Tokens
}

func newEnv(t *testing.T) *env { return newEnvB(t) }

func newEnvB(t testing.TB) *env {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{st: st, tok: ipxe.Tokens{Key: []byte("k")}}
	e.srv = &agentapi.Server{Store: st, Tokens: e.tok, MaxWait: 2 * time.Second}
	e.ts = httptest.NewServer(e.srv)
	t.Cleanup(e.ts.Close)
	return e
}

func (e *env) tx(t *testing.T, fn func(ctx context.Context, tx *ent.Tx) error) {
	t.Helper()
	if err := e.st.Tx(events.WithActor(context.Background(), "test"), fn); err != nil {
		t.Fatal(err)
	}
}

func fixture(t *testing.T, name string) agent.Inventory {
	t.Helper()
	inv, err := agent.Collect("../agent/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

const vmMAC = "52:54:00:12:34:01"

func (e *env) client(id int, mac, trace string) *agent.Client {
	return &agent.Client{Base: e.ts.URL, Token: e.tok.IssueAgent(id, mac, trace, time.Now()), Backoff: 50 * time.Millisecond}
}

// counts is what a refused request must leave unchanged.
func (e *env) counts(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	c := e.st.Client
	m, _ := c.Machine.Query().Count(ctx)
	n, _ := c.NIC.Query().Count(ctx)
	d, _ := c.Disk.Query().Count(ctx)
	ev, _ := c.Event.Query().Count(ctx)
	tk, _ := c.AgentTask.Query().Where(agenttask.StateNEQ(agenttask.StateQUEUED)).Count(ctx)
	return fmt.Sprintf("machines=%d nics=%d disks=%d events=%d tasks-touched=%d", m, n, d, ev, tk)
}

// An agent whose MACs, serial and UUID match nothing creates a DISCOVERED machine named from the
// pattern, with its NICs, disks and inventory; registering again finds the same machine.
func TestRegisterUnknownMachine(t *testing.T) {
	e := newEnv(t)
	inv := fixture(t, "qemu-vm")
	c := e.client(0, vmMAC, "boot1")
	reg, err := c.Register(context.Background(), agent.Register{Trace: "boot1", BootMAC: vmMAC, Inventory: inv})
	if err != nil {
		t.Fatal(err)
	}
	if !reg.Created || reg.Name != "d-525400123401.discovered" || reg.Session == "" {
		t.Fatalf("registered %+v", reg)
	}
	m, err := e.st.Client.Machine.Query().Where(machine.ID(reg.Machine)).WithNics().WithDisks().Only(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if m.State != machine.StateDISCOVERED || m.Serial != "PRYBAR-VM-0001" || m.UUID != "6f1c7a9e-2b4d-4c8e-9a31-0d5e7f6b1c22" ||
		m.CPUCount != 2 || m.MemoryBytes != 1<<30 || !m.Alive {
		t.Errorf("machine %+v", m)
	}
	var macs, disks []string
	for _, n := range m.Edges.Nics {
		macs = append(macs, fmt.Sprintf("%s pxe=%v", n.MAC, n.Pxe))
	}
	for _, d := range m.Edges.Disks {
		disks = append(disks, fmt.Sprintf("%s %d", d.Name, d.SizeBytes))
	}
	if got := strings.Join(macs, ","); got != "52:54:00:12:34:01 pxe=true,52:54:00:12:34:02 pxe=false" {
		t.Errorf("NICs %s", got)
	}
	if got := strings.Join(disks, ","); got != "vda 2147483648,vdb 8589934592" {
		t.Errorf("disks %s", got)
	}
	reg2, err := e.client(0, vmMAC, "boot2").Register(context.Background(), agent.Register{Trace: "boot2", Inventory: inv})
	if err != nil || reg2.Machine != reg.Machine || reg2.Created || len(reg2.Drift) != 0 {
		t.Fatalf("second registration: %+v %v", reg2, err)
	}
	if n, _ := e.st.Client.Machine.Query().Count(context.Background()); n != 1 {
		t.Errorf("%d machines after two registrations, want 1", n)
	}
}

// A known machine planning three disks, 4 CPUs and a third NIC gets a drift report naming exactly
// what differs, one machine.drift event, and no second event when the same report repeats.
func TestRegisterKnownMachineDrift(t *testing.T) {
	e := newEnv(t)
	var id int
	e.tx(t, func(ctx context.Context, tx *ent.Tx) error {
		m, err := tx.Machine.Create().SetName("vm01.lab.example").SetCPUCount(4).SetMemoryBytes(1 << 30).Save(ctx)
		if err != nil {
			return err
		}
		id = m.ID
		for _, mac := range []string{vmMAC, "52:54:00:12:34:02", "52:54:00:12:34:03"} {
			if err := tx.NIC.Create().SetMachineID(id).SetMAC(mac).Exec(ctx); err != nil {
				return err
			}
		}
		for i, sz := range []int64{2 << 30, 8 << 30, 4 << 30} {
			if err := tx.Disk.Create().SetMachineID(id).SetName(fmt.Sprintf("vd%c", 'a'+i)).SetSizeBytes(sz).Exec(ctx); err != nil {
				return err
			}
		}
		return nil
	})
	inv := fixture(t, "qemu-vm")
	reg, err := e.client(id, vmMAC, "b1").Register(context.Background(), agent.Register{Trace: "b1", Inventory: inv})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(reg.Drift)
	want := `{"cpuCount":{"found":2,"planned":4},"disks":{"extra":[],"found":2,"missing":[{"name":"vdc","sizeBytes":4294967296}],"planned":3},"nics":{"extra":[],"missing":["52:54:00:12:34:03"]}}`
	if string(got) != want {
		t.Errorf("drift\n%s\nwant\n%s", got, want)
	}
	m, _ := e.st.Client.Machine.Get(context.Background(), id)
	if stored, _ := json.Marshal(m.Drift); string(stored) != want {
		t.Errorf("Machine.drift = %s", stored)
	}
	if m.Serial != "PRYBAR-VM-0001" || m.CPUCount != 4 {
		t.Errorf("merge: serial %q (want filled in), cpu %d (want the planned 4 kept)", m.Serial, m.CPUCount)
	}
	if _, err := e.client(id, vmMAC, "b2").Register(context.Background(), agent.Register{Trace: "b2", Inventory: inv}); err != nil {
		t.Fatal(err)
	}
	if n := e.eventCount(t, "machine.drift"); n != 1 {
		t.Errorf("%d machine.drift events after the same report twice, want 1", n)
	}
	// The machine's records fixed: drift clears, with an event.
	e.tx(t, func(ctx context.Context, tx *ent.Tx) error {
		if _, err := tx.NIC.Delete().Where().Exec(ctx); err != nil {
			return err
		}
		_, err := tx.Disk.Delete().Exec(ctx)
		if err != nil {
			return err
		}
		return tx.Machine.UpdateOneID(id).SetCPUCount(2).Exec(ctx)
	})
	reg, err = e.client(id, "", "b3").Register(context.Background(), agent.Register{Trace: "b3", Inventory: inv})
	if err != nil || len(reg.Drift) != 0 {
		t.Fatalf("after fixing the records: drift %v, %v", reg.Drift, err)
	}
	if n := e.eventCount(t, "machine.drift"); n != 2 {
		t.Errorf("%d machine.drift events, want 2 (found, cleared)", n)
	}
}

func (e *env) eventCount(t *testing.T, kind string) int {
	t.Helper()
	n, err := e.st.Client.Event.Query().Where(event.Kind(kind)).Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A report matching two machines (one by MAC, another by serial) merges nothing: both get the
// conflict recorded and an event, the agent a 409 naming them.
func TestRegisterConflict(t *testing.T) {
	e := newEnv(t)
	var a, b int
	e.tx(t, func(ctx context.Context, tx *ent.Tx) error {
		ma, err := tx.Machine.Create().SetName("a.lab.example").Save(ctx)
		if err != nil {
			return err
		}
		mb, err := tx.Machine.Create().SetName("b.lab.example").SetSerial("PRYBAR-VM-0001").Save(ctx)
		if err != nil {
			return err
		}
		a, b = ma.ID, mb.ID
		return tx.NIC.Create().SetMachineID(a).SetMAC(vmMAC).Exec(ctx)
	})
	_, err := e.client(0, vmMAC, "b1").Register(context.Background(), agent.Register{Inventory: fixture(t, "qemu-vm")})
	var he *agent.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusConflict || !strings.Contains(he.Body, "CONFLICT") {
		t.Fatalf("conflicting report: %v, want 409 CONFLICT", err)
	}
	for _, id := range []int{a, b} {
		m, _ := e.st.Client.Machine.Query().Where(machine.ID(id)).WithNics().WithDisks().Only(context.Background())
		if !strings.Contains(m.DiscoveryConflict, "matches machines") || len(m.Edges.Disks) != 0 || m.Discovery != nil {
			t.Errorf("machine %s: conflict %q, %d disks, discovery %v; want the conflict and nothing merged", m.Name, m.DiscoveryConflict, len(m.Edges.Disks), m.Discovery)
		}
	}
	if n := e.eventCount(t, "machine.discovery_conflict"); n != 2 {
		t.Errorf("%d conflict events, want 2", n)
	}
}

func post(t *testing.T, url, tok string, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// Bad agent input gets a clear 4xx and writes nothing: truncated JSON, a 10 MB report, a forged
// token, a token for another machine or NIC, a replayed result.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	var known int
	e.tx(t, func(ctx context.Context, tx *ent.Tx) error {
		m, err := tx.Machine.Create().SetName("other.lab.example").Save(ctx)
		if err != nil {
			return err
		}
		known = m.ID
		return tx.NIC.Create().SetMachineID(known).SetMAC("52:54:00:99:99:99").Exec(ctx)
	})
	good, _ := json.Marshal(agent.Register{Trace: "b1", Inventory: fixture(t, "qemu-vm")})
	tok := e.tok.IssueAgent(0, vmMAC, "b1", time.Now())
	big := append([]byte(`{"trace":"b1","inventory":{"dmi":{"vendor":"`), bytes.Repeat([]byte("x"), 10<<20)...)
	big = append(big, `"}}}`...)
	before := e.counts(t)
	for _, tc := range []struct {
		name, tok string
		body      []byte
		status    int
		msg       string
	}{
		{"truncated JSON", tok, good[:len(good)/2], 400, "malformed JSON"},
		{"10 MB report", tok, big, 413, "larger than"},
		{"unknown field", tok, []byte(`{"inventory":{},"rogue":1}`), 400, "unknown field"},
		{"no NIC", tok, []byte(`{"inventory":{"cpu":{"count":1}}}`), 422, "no network interface"},
		{"forged token", tok + "x", good, 401, "invalid or expired"},
		{"expired token", e.tok.IssueAgent(0, vmMAC, "b1", time.Now().Add(-48*time.Hour)), good, 401, "invalid or expired"},
		{"token of another NIC", e.tok.IssueAgent(0, "52:54:00:00:00:01", "b1", time.Now()), good, 403, "issued to NIC"},
		{"token of another machine", e.tok.IssueAgent(known, "", "b1", time.Now()), good, 403, "token is for machine"},
		{"token of another boot", e.tok.IssueAgent(0, vmMAC, "b0", time.Now()), good, 403, "token is for boot"},
		{"session token used to register", e.tok.Issue(known, "agent-session/b1", time.Now()), good, 401, "boot token"},
	} {
		code, body := post(t, e.ts.URL+"/agent/register", tc.tok, tc.body)
		if code != tc.status || !strings.Contains(body, tc.msg) || !strings.HasPrefix(body, `{"error":`) {
			t.Errorf("%s: %d %.200s; want %d with %q", tc.name, code, body, tc.status, tc.msg)
		}
	}
	if after := e.counts(t); after != before {
		t.Errorf("refused reports wrote something: %s → %s", before, after)
	}

	// A replayed result: the first delivery is applied, the replay is refused with 409 and
	// changes nothing.
	reg, err := e.client(0, vmMAC, "b1").Register(context.Background(), agent.Register{Trace: "b1", Inventory: fixture(t, "qemu-vm")})
	if err != nil {
		t.Fatal(err)
	}
	task := e.queue(t, reg.Machine, "t1", "echo hi")
	sess := reg.Session
	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+"/agent/work?wait=1", nil)
	req.Header.Set("Authorization", "Bearer "+sess)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("work: %v %v", resp, err)
	}
	res, _ := json.Marshal(agent.Result{Task: task, ResultID: "r1", ExitCode: 0, Output: "hi\n"})
	if code, body := post(t, e.ts.URL+"/agent/result", sess, res); code != 200 {
		t.Fatalf("first result: %d %s", code, body)
	}
	before = e.counts(t)
	for _, body := range [][]byte{res, []byte(strings.Replace(string(res), `"r1"`, `"r2"`, 1))} {
		if code, b := post(t, e.ts.URL+"/agent/result", sess, body); code != 409 || !strings.Contains(b, "already recorded") {
			t.Errorf("replayed result: %d %s; want 409", code, b)
		}
	}
	if code, b := post(t, e.ts.URL+"/agent/result", sess, []byte(`{"task":`)); code != 400 {
		t.Errorf("truncated result: %d %s", code, b)
	}
	other := e.tok.Issue(known, "agent-session/b1", time.Now())
	if code, b := post(t, e.ts.URL+"/agent/result", other, res); code != 404 {
		t.Errorf("another machine's session reporting this task: %d %s; want 404", code, b)
	}
	if after := e.counts(t); after != before {
		t.Errorf("refused results wrote something: %s → %s", before, after)
	}
	tk, _ := e.st.Client.AgentTask.Get(context.Background(), task)
	if tk.Output != "hi\n" || tk.ResultID != "r1" || tk.State != agenttask.StateDONE {
		t.Errorf("task after replays: %+v", tk)
	}
}

func (e *env) queue(t *testing.T, machineID int, key, script string) int {
	t.Helper()
	var id int
	e.tx(t, func(ctx context.Context, tx *ent.Tx) error {
		tk, err := agentapi.Queue(ctx, tx, machineID, nil, key, agent.KindScript, script, 10*time.Second)
		if err == nil {
			id = tk.ID
		}
		return err
	})
	e.srv.Notify(machineID)
	return id
}

// flaky wraps the server: the first result delivery is applied but its answer is lost (502), and
// the first output chunk fails with 503.
type flaky struct {
	h            http.Handler
	results, out atomic.Int32
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/agent/result":
		if f.results.Add(1) == 1 {
			rec := httptest.NewRecorder()
			f.h.ServeHTTP(rec, r)
			http.Error(w, "lost", http.StatusBadGateway)
			return
		}
	case "/agent/output":
		if f.out.Add(1) == 1 {
			http.Error(w, "away", http.StatusServiceUnavailable)
			return
		}
	}
	f.h.ServeHTTP(w, r)
}

// The agent runs queued tasks with their timeouts, streams output and delivers each result
// once, even when the answer to the first delivery is lost.
func TestAgentRunsTasks(t *testing.T) {
	e := newEnv(t)
	f := &flaky{h: e.srv}
	e.ts.Config.Handler = f
	c := e.client(0, vmMAC, "b1")
	reg, err := c.Register(context.Background(), agent.Register{Trace: "b1", Inventory: fixture(t, "qemu-vm")})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t1 := e.queue(t, reg.Machine, "write", "echo one; echo x >> "+dir+"/effect; sleep 1.2; echo two")
	t2 := e.queue(t, reg.Machine, "slow", "sleep 30")
	e.tx(t, func(ctx context.Context, tx *ent.Tx) error {
		return tx.AgentTask.UpdateOneID(t2).SetTimeoutSeconds(1).Exec(ctx)
	})
	t3 := e.queue(t, reg.Machine, "fails", "echo bad >&2; exit 3")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &agent.Runner{Client: c, ChunkEvery: 200 * time.Millisecond}
	done := make(chan error, 1)
	go func() { done <- r.Loop(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		n, _ := e.st.Client.AgentTask.Query().Where(agenttask.StateIn(agenttask.StateDONE, agenttask.StateFAILED)).Count(context.Background())
		if n == 3 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	<-done
	get := func(id int) *ent.AgentTask { tk, _ := e.st.Client.AgentTask.Get(context.Background(), id); return tk }
	if tk := get(t1); tk.State != agenttask.StateDONE || tk.Output != "one\ntwo\n" || *tk.ExitCode != 0 {
		t.Errorf("task write: %s %q %v", tk.State, tk.Output, tk.ExitCode)
	}
	if data, _ := os.ReadFile(dir + "/effect"); string(data) != "x\n" {
		t.Errorf("the task's effect happened %d times, want once", strings.Count(string(data), "x"))
	}
	if tk := get(t2); tk.State != agenttask.StateFAILED || !strings.Contains(tk.Error, "timed out after 1s") {
		t.Errorf("task slow: %s %q", tk.State, tk.Error)
	}
	if tk := get(t3); tk.State != agenttask.StateFAILED || *tk.ExitCode != 3 || tk.Output != "bad\n" {
		t.Errorf("task fails: %s %v %q", tk.State, tk.ExitCode, tk.Output)
	}
	if f.results.Load() < 4 {
		t.Errorf("%d result deliveries; want the lost first one retried", f.results.Load())
	}
	if n := e.eventCount(t, "agent.task.end"); n != 3 {
		t.Errorf("%d agent.task.end events, want 3", n)
	}
}

// Past MaxWaiters a work poll is not held: it answers 204 within about a second with a
// Retry-After, which the client reports (Idle); a task queued for a held poll's machine wakes it
// at once through the event feed (the queue here bypasses Notify).
func TestWorkPollsBounded(t *testing.T) {
	e := newEnv(t)
	e.srv.MaxWaiters, e.srv.MaxWait, e.srv.IdleRetry = 1, 10*time.Second, 4*time.Second
	ctx := context.Background()
	c1, c2 := e.client(0, vmMAC, "p1"), e.client(0, "52:54:00:aa:bb:01", "p2")
	reg1, err := c1.Register(ctx, agent.Register{Trace: "p1", Inventory: fixture(t, "qemu-vm")})
	if err != nil {
		t.Fatal(err)
	}
	inv := fixture(t, "qemu-vm")
	inv.NICs = inv.NICs[:1]
	inv.NICs[0].MAC = "52:54:00:aa:bb:01"
	inv.DMI.Serial, inv.DMI.UUID = "other-serial", ""
	if _, err := c2.Register(ctx, agent.Register{Trace: "p2", Inventory: inv}); err != nil {
		t.Fatal(err)
	}
	held := make(chan *agent.Task, 1)
	go func() {
		tk, err := c1.Work(ctx, 10*time.Second, nil)
		if err != nil {
			t.Error(err)
		}
		held <- tk
	}()
	time.Sleep(300 * time.Millisecond) // c1's poll is held
	start := time.Now()
	tk, err := c2.Work(ctx, 10*time.Second, nil)
	if err != nil || tk != nil {
		t.Fatalf("second poll: %v %v", tk, err)
	}
	if d := time.Since(start); d > 3*time.Second || c2.Idle() < 2*time.Second || c2.Idle() > 6*time.Second {
		t.Errorf("second poll answered after %s with Retry-After %s; want ~1 s and 2–6 s", d, c2.Idle())
	}
	start = time.Now()
	e.tx(t, func(ctx context.Context, tx *ent.Tx) error {
		tk, err := agentapi.Queue(ctx, tx, reg1.Machine, nil, "k", agent.KindScript, "true", 10*time.Second)
		if err == nil {
			err = events.Emit(ctx, "agent.task.queued", "machine", reg1.Machine, &reg1.Machine, map[string]any{"task": tk.ID})
		}
		return err
	})
	if tk := <-held; tk == nil || tk.Name != "k" || time.Since(start) > 3*time.Second || c1.Idle() != 0 {
		t.Errorf("held poll got %v after %s (idle %s); want task k at once", tk, time.Since(start), c1.Idle())
	}
}

// A machine that boots again while its agent runs a task loses that task's agent and result: the
// new boot's registration ends the task FAILED (an event says so), so a re-run of its node-role
// queues it again instead of waiting on it until the role's timeout. A repeated registration of
// the same boot (an agent retrying) leaves its running task alone.
func TestRebootFailsLostTasks(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c1 := e.client(0, vmMAC, "b1")
	reg, err := c1.Register(ctx, agent.Register{Trace: "b1", Inventory: fixture(t, "qemu-vm")})
	if err != nil {
		t.Fatal(err)
	}
	id := e.queue(t, reg.Machine, "long", "sleep 600")
	if tk, err := c1.Work(ctx, time.Second, nil); err != nil || tk == nil || tk.ID != id {
		t.Fatalf("work: %+v %v", tk, err)
	}
	state := func() *ent.AgentTask { tk, _ := e.st.Client.AgentTask.Get(ctx, id); return tk }
	if _, err := c1.Register(ctx, agent.Register{Trace: "b1", Inventory: fixture(t, "qemu-vm")}); err != nil {
		t.Fatal(err)
	}
	if tk := state(); tk.State != agenttask.StateRUNNING {
		t.Fatalf("the same boot registering again ended its task: %s %q", tk.State, tk.Error)
	}
	c2 := e.client(reg.Machine, "", "b2")
	if _, err := c2.Register(ctx, agent.Register{Trace: "b2", Inventory: fixture(t, "qemu-vm")}); err != nil {
		t.Fatal(err)
	}
	tk := state()
	if tk.State != agenttask.StateFAILED || !strings.Contains(tk.Error, "booted again (boot b2)") || tk.FinishedAt == nil {
		t.Errorf("after a new boot the lost task is %s %q", tk.State, tk.Error)
	}
	if n := e.eventCount(t, "agent.task.end"); n != 1 {
		t.Errorf("%d agent.task.end events, want 1", n)
	}
	// Queuing the node-role's work again gives a fresh task, handed to the new boot.
	id2 := e.queue(t, reg.Machine, "long-again", "true")
	if got, err := c2.Work(ctx, time.Second, nil); err != nil || got == nil || got.ID != id2 {
		t.Errorf("the new boot's agent got %+v %v, want task %d", got, err, id2)
	}
}
