package fleet

// The discover → ready benchmark: a real `prybar serve` process (SQLite in a temporary folder),
// a fleet of simulated BMCs with simulated agents in this process, and an operator that
// registers the BMCs, binds the built-in discovery chain on every machine, commits and waits
// until every machine is READY. It measures the server, not the simulators: wall time from the
// commit, node-roles per second, and the serve process's peak RSS (VmHWM) and CPU time.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// BenchConfig configures Bench.
type BenchConfig struct {
	Prybar       string  // the prybar binary to run as the server (required)
	Machines     int     // default 10,000
	RedfishShare float64 // default 0.5
	MockupDir    string  // Redfish mock-up (required when RedfishShare > 0)
	// PowerDelay is the simulated BMCs' power transition time (default 1 s); BootDelay the
	// simulated PXE boot's two steps, power-on → script and script → agent (default 1 s).
	PowerDelay, BootDelay time.Duration
	Dir                   string        // working folder (database, logs); default a temporary one, removed
	Timeout               time.Duration // for the whole run (default 30 min)
	Parallelism           int           // concurrent API requests when registering and binding (default 8)
	PerWorker             int           // machines per fleet worker process (default 5,000)
	Env                   []string      // extra environment of the server (e.g. PRYBAR_CONCURRENCY=…)
	Out                   io.Writer     // progress lines (default discard)
}

// BenchResult is what Bench measured.
type BenchResult struct {
	Machines, Ready int
	NodeRoles       int           // ACTIVE node-roles at the end
	Register, Bind  time.Duration // setup: registering the BMCs, binding the chain
	Wall            time.Duration // commit → every machine READY (or the run gave up)
	PeakRSS         int64         // VmHWM of the serve process, bytes
	ServeCPU        time.Duration // user + system CPU time of the serve process over the whole run
	Load            string        // /proc/loadavg at the start and the end
	Agents          []string      // the fleet workers' agent summaries
	Last            Progress
	Failed          []string // examples of node-roles in ERROR
}

func (r BenchResult) String() string {
	nps := 0.0
	if r.Wall > 0 {
		nps = float64(r.NodeRoles) / r.Wall.Seconds()
	}
	return fmt.Sprintf("%d/%d machines READY in %s (commit → READY); %d node-roles ACTIVE, %.1f node-roles/s; serve peak RSS %.0f MB, CPU %s; setup: register %s, bind %s; load %s; %s",
		r.Ready, r.Machines, r.Wall.Round(time.Second), r.NodeRoles, nps, float64(r.PeakRSS)/(1<<20), r.ServeCPU.Round(time.Second),
		r.Register.Round(time.Second), r.Bind.Round(time.Second), r.Load, strings.Join(r.Agents, "; "))
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// procStatus reads a "VmHWM:   1234 kB" style field of /proc/PID/status, in bytes.
func procStatus(pid int, field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// procCPU is the process's user + system time from /proc/PID/stat (clock ticks of 10 ms).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command (which may hold spaces) start after the last ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// Bench runs the benchmark. The error reports a setup failure or machines that never became
// READY (the result then holds what was measured).
func Bench(ctx context.Context, cfg BenchConfig) (res BenchResult, err error) {
	if cfg.Prybar == "" {
		return res, errors.New("bench: the prybar binary is required")
	}
	if cfg.Machines <= 0 {
		cfg.Machines = 10000
	}
	if cfg.PowerDelay <= 0 {
		cfg.PowerDelay = time.Second
	}
	if cfg.BootDelay <= 0 {
		cfg.BootDelay = time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Minute
	}
	if cfg.Parallelism <= 0 {
		cfg.Parallelism = 8
	}
	if cfg.PerWorker <= 0 {
		cfg.PerWorker = 5000
	}
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	logf := func(f string, a ...any) {
		fmt.Fprintf(out, "%s "+f+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
	}
	res.Machines = cfg.Machines
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if cfg.Dir == "" {
		if cfg.Dir, err = os.MkdirTemp("", "prybar-fleet-bench-"); err != nil {
			return res, err
		}
		defer os.RemoveAll(cfg.Dir)
	}
	db := filepath.Join(cfg.Dir, "prybar.db")

	// An admin token for the operator, created in the database before the server starts.
	var tok bytes.Buffer
	tc := exec.CommandContext(ctx, cfg.Prybar, "tokens", "create", "--db", db, "--role", "admin", "fleet-bench")
	tc.Stdout, tc.Stderr = &tok, io.Discard
	if err := tc.Run(); err != nil {
		return res, fmt.Errorf("bench: create token: %w", err)
	}
	token := strings.TrimSpace(tok.String())

	apiPort, err := freePort()
	if err != nil {
		return res, err
	}
	bootPort, err := freePort()
	if err != nil {
		return res, err
	}
	api := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	boot := fmt.Sprintf("http://127.0.0.1:%d", bootPort)
	logFile, err := os.Create(filepath.Join(cfg.Dir, "serve.log"))
	if err != nil {
		return res, err
	}
	defer logFile.Close()
	srv := exec.Command(cfg.Prybar, "serve", "--db", db, "--listen", fmt.Sprintf("127.0.0.1:%d", apiPort),
		"--boot-listen", fmt.Sprintf("127.0.0.1:%d", bootPort), "--rate-limit", "0", "--log-level", "warn")
	srv.Env = append(os.Environ(), cfg.Env...)
	srv.Stdout, srv.Stderr = logFile, logFile
	if err := srv.Start(); err != nil {
		return res, fmt.Errorf("bench: start prybar serve: %w", err)
	}
	pid := srv.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	defer func() {
		if res.PeakRSS == 0 {
			res.PeakRSS = procStatus(pid, "VmHWM")
		}
		if c := procCPU(pid); c > 0 {
			res.ServeCPU = c
		}
		_ = srv.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = srv.Process.Kill()
			<-exited
		}
	}()
	if err := waitReady(ctx, api, exited); err != nil {
		return res, fmt.Errorf("bench: %w (log: %s)", err, tail(logFile.Name()))
	}
	res.Load = loadavg()
	logf("prybar serve (pid %d) ready at %s, boot HTTP at %s; load %s", pid, api, boot, res.Load)

	// The fleet runs in worker processes (`prybar sim fleet --agents`) of at most PerWorker
	// machines: a process may hold 20,000 descriptors here, and each machine costs two (its BMC's
	// socket and its agent's connection).
	o := RegisterOptions{Token: token, Parallelism: cfg.Parallelism}
	t0 := time.Now()
	workers, err := startWorkers(ctx, cfg, api, boot, token, logf)
	defer func() {
		res.Agents = stopWorkers(workers)
	}()
	if err != nil {
		return res, err
	}
	res.Register = time.Since(t0)
	op := NewOperator(api, o)
	ids, err := op.MachineIDs(ctx)
	if err != nil {
		return res, err
	}
	if len(ids) != cfg.Machines {
		return res, fmt.Errorf("bench: %d machines registered, want %d", len(ids), cfg.Machines)
	}
	logf("registered %d machines with their BMCs in %s", len(ids), res.Register.Round(time.Millisecond))
	reg := &Registration{MachineIDs: ids}

	dep, err := op.CreateDeployment(ctx, "fleet-bench")
	if err != nil {
		return res, err
	}
	t0 = time.Now()
	total := len(DiscoveryChain) * len(reg.MachineIDs)
	next := time.Now().Add(10 * time.Second)
	err = op.BindChain(ctx, dep, DiscoveryChain, reg.MachineIDs, func(done int) {
		if time.Now().After(next) {
			logf("bound %d of %d", done, total)
			next = time.Now().Add(10 * time.Second)
		}
	})
	if err != nil {
		return res, err
	}
	res.Bind = time.Since(t0)
	logf("bound %s on every machine (%d bindings) in %s", strings.Join(DiscoveryChain, " → "), total, res.Bind.Round(time.Millisecond))

	t0 = time.Now()
	if err := op.Commit(ctx, dep); err != nil {
		return res, err
	}
	logf("committed")
	// Stuck means no node-role became ACTIVE for five minutes (READY lags: the annealer works
	// through each role on every machine before the last one makes any machine READY).
	lastActive := -1
	lastChange := time.Now()
	for {
		p, err := op.Progress(ctx)
		if err == nil {
			res.Last, res.Ready, res.NodeRoles, res.Failed = p, p.MachineStates["READY"], p.NodeRoles["ACTIVE"], p.FailedExamples
			if res.NodeRoles != lastActive {
				lastActive, lastChange = res.NodeRoles, time.Now()
			}
			logf("%s; serve RSS %.0f MB", p, float64(procStatus(pid, "VmRSS"))/(1<<20))
			if res.Ready == cfg.Machines {
				break
			}
		} else {
			logf("progress: %v", err)
		}
		switch {
		case ctx.Err() != nil:
			res.Wall = time.Since(t0)
			return res, fmt.Errorf("bench: %d of %d machines READY when time ran out", res.Ready, cfg.Machines)
		case time.Since(lastChange) > 5*time.Minute:
			res.Wall = time.Since(t0)
			return res, fmt.Errorf("bench: no node-role became ACTIVE for 5 minutes (%d of %d machines READY); failed e.g. %v", res.Ready, cfg.Machines, res.Failed)
		}
		select {
		case <-exited:
			return res, fmt.Errorf("bench: prybar serve exited (log: %s)", tail(logFile.Name()))
		case <-time.After(2 * time.Second):
		}
	}
	res.Wall = time.Since(t0)
	res.PeakRSS = procStatus(pid, "VmHWM")
	res.Load += " → " + loadavg()
	return res, nil
}

func waitReady(ctx context.Context, api string, exited <-chan error) error {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, api+"/readyz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("prybar serve exited: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// worker is one `prybar sim fleet --agents` process.
type worker struct {
	cmd       *exec.Cmd
	done      chan struct{} // closed when its output ended
	summaries []string
}

func startWorkers(ctx context.Context, cfg BenchConfig, api, boot, token string, logf func(string, ...any)) ([]*worker, error) {
	var ws []*worker
	registered := make(chan error, cfg.Machines/cfg.PerWorker+1)
	per := (cfg.Machines + cfg.PerWorker - 1) / cfg.PerWorker
	for n := 0; n < per; n++ {
		first := n * cfg.PerWorker
		count := min(cfg.PerWorker, cfg.Machines-first)
		w := &worker{done: make(chan struct{})}
		w.cmd = exec.Command(cfg.Prybar, "sim", "fleet", "--agents", "--machines", strconv.Itoa(count), "--first-index", strconv.Itoa(first),
			"--redfish-share", strconv.FormatFloat(cfg.RedfishShare, 'f', -1, 64), "--mockup", cfg.MockupDir,
			"--power-delay", cfg.PowerDelay.String(), "--boot-delay", cfg.BootDelay.String(),
			"--prybar", api, "--boot-url", boot, "--token", token, "--site", "fleet-bench", "--stats-every", "1m",
			"--register-parallelism", strconv.Itoa(max(cfg.Parallelism/per, 2)))
		w.cmd.Stderr = os.Stderr
		outp, err := w.cmd.StdoutPipe()
		if err != nil {
			return ws, err
		}
		if err := w.cmd.Start(); err != nil {
			return ws, fmt.Errorf("bench: start fleet worker: %w", err)
		}
		ws = append(ws, w)
		go func() {
			defer close(w.done)
			sc := bufio.NewScanner(outp)
			said := false
			for sc.Scan() {
				line := sc.Text()
				logf("[fleet %d] %s", n, line)
				if strings.HasPrefix(line, "summary: agents:") {
					w.summaries = append(w.summaries, strings.TrimPrefix(line, "summary: "))
				}
				if !said && strings.HasPrefix(line, "registered in ") {
					said = true
					registered <- nil
				}
			}
			if !said {
				registered <- fmt.Errorf("bench: fleet worker %d ended before registering its machines", n)
			}
		}()
	}
	for range ws {
		select {
		case err := <-registered:
			if err != nil {
				return ws, err
			}
		case <-ctx.Done():
			return ws, ctx.Err()
		}
	}
	return ws, nil
}

// stopWorkers interrupts the workers and returns their agent summaries.
func stopWorkers(ws []*worker) []string {
	var out []string
	for _, w := range ws {
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, w := range ws {
		select {
		case <-w.done:
		case <-time.After(60 * time.Second):
			_ = w.cmd.Process.Kill()
			<-w.done
		}
		_ = w.cmd.Wait()
		out = append(out, w.summaries...)
	}
	return out
}
