package fleet

// Simulated machines behind the simulated BMCs: a machine that its BMC boots from the network
// (a one-time or persistent PXE override when it comes on) "PXE boots" — it fetches its iPXE
// script from Prybar's boot HTTP server by its first MAC, takes the agent token and trace from
// the script's kernel command line as the discovery image's init does, and runs the real agent
// client (provision/agent) with an inventory that matches what its BMC reports. Tasks run through
// a simulated shell. A power-off, or the next boot, ends the agent.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prybar/prybar/provision/agent"
	"github.com/prybar/prybar/provision/redfish"
	"github.com/prybar/prybar/provision/redfish/redfishsim"
)

// AgentConfig turns on the simulated agents (Config.Agents).
type AgentConfig struct {
	// BootURL is Prybar's boot HTTP base URL (serving /boot/ipxe), e.g. http://127.0.0.1:8080.
	BootURL string
	// BootDelay is how long a PXE boot takes from power-on to the script fetch (DHCP, iPXE),
	// and again from the script to the agent's registration (kernel, initramfs); default 0.
	BootDelay time.Duration
	// HTTP is the agents' client (default: one shared transport keeping a connection per agent).
	HTTP *http.Client
	Log  *slog.Logger
}

// AgentState is what one machine's agent did (Fleet.Agent).
type AgentState struct {
	PXEBoots      int            // boots from the network while agents were on
	Registrations int            // successful registrations
	Machine       int            // Prybar's machine id from the last registration
	Drift         map[string]any // drift the last registration reported
	Tasks         int            // tasks run
	LastTask      string         // name of the last task run
	LastOutput    string         // its simulated output
	Err           string         // the last error that ended an agent early ("" when none)
}

// agentSlot is the simulated machine's agent: the running one (if any) and its record.
type agentSlot struct {
	mu     sync.Mutex
	cancel context.CancelFunc
	gen    int
	state  AgentState
}

// agents is the fleet's agent machinery.
type agents struct {
	cfg    AgentConfig
	hc     *http.Client
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	redfishOnce sync.Once
	redfishTmpl *redfish.Inventory // the mock-up's inventory as BMC index 0 reports it
	redfishErr  error

	running atomic.Int64
	errs    atomic.Int64
}

func newAgents(cfg AgentConfig, machines int) (*agents, error) {
	if cfg.BootURL == "" {
		return nil, errors.New("fleet: agents need a boot URL")
	}
	if _, err := url.Parse(cfg.BootURL); err != nil {
		return nil, fmt.Errorf("fleet: boot URL: %w", err)
	}
	cfg.BootURL = strings.TrimSuffix(cfg.BootURL, "/")
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	hc := cfg.HTTP
	if hc == nil {
		// One kept-alive connection per agent: the default two idle connections per host would
		// make thousands of long polls open (and leave in TIME_WAIT) a connection each time.
		hc = &http.Client{Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        machines + 64,
			MaxIdleConnsPerHost: machines + 64,
			IdleConnTimeout:     90 * time.Second,
		}}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &agents{cfg: cfg, hc: hc, ctx: ctx, cancel: cancel}, nil
}

// close ends every agent and waits for them.
func (a *agents) close() {
	a.cancel()
	a.wg.Wait()
}

// power is the simulators' power hook for BMC b: any transition ends the running agent; a boot
// from the network starts a new one. It runs under the simulator's lock, so it only starts
// goroutines.
func (f *Fleet) power(b *BMC, on, pxe bool) {
	a := f.agents
	s := b.agent
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		s.cancel()
		s.cancel = nil
	}
	s.gen++
	if !on || !pxe || a.ctx.Err() != nil {
		return
	}
	s.state.PXEBoots++
	ctx, cancel := context.WithCancel(a.ctx)
	s.cancel = cancel
	gen := s.gen
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer cancel()
		a.running.Add(1)
		defer a.running.Add(-1)
		if err := f.runAgent(ctx, b, gen); err != nil && ctx.Err() == nil {
			a.errs.Add(1)
			a.cfg.Log.Warn("simulated agent ended", "machine", b.Name, "err", err)
			s.mu.Lock()
			if s.gen == gen {
				s.state.Err = err.Error()
			}
			s.mu.Unlock()
		}
	}()
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// runAgent is one network boot of b's machine, until ctx ends (power off, next boot, Close).
func (f *Fleet) runAgent(ctx context.Context, b *BMC, gen int) error {
	a := f.agents
	inv, err := f.Inventory(b)
	if err != nil {
		return err
	}
	mac := inv.NICs[0].MAC
	if err := sleepCtx(ctx, a.cfg.BootDelay); err != nil {
		return nil
	}
	script, err := a.script(ctx, mac)
	if err != nil {
		return err
	}
	cl := agent.ParseCmdline(kernelLine(script))
	if cl.Token == "" || cl.URL == "" {
		// Not the discovery image (e.g. bootenv local): the machine boots on without an agent.
		return nil
	}
	if err := sleepCtx(ctx, a.cfg.BootDelay); err != nil {
		return nil
	}
	c := &agent.Client{Base: cl.URL, Token: cl.Token, HTTP: a.hc, Log: a.cfg.Log}
	bootMAC := cl.MAC
	if bootMAC == "" {
		bootMAC = mac
	}
	reg, err := c.Register(ctx, agent.Register{Trace: cl.Trace, BootMAC: bootMAC, Inventory: inv})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("register: %w", err)
	}
	s := b.agent
	s.mu.Lock()
	if s.gen == gen {
		s.state.Registrations++
		s.state.Machine, s.state.Drift = reg.Machine, reg.Drift
	}
	s.mu.Unlock()
	r := &agent.Runner{Client: c, Log: a.cfg.Log, Exec: func(ctx context.Context, script string, out io.Writer) (int, error) {
		var buf strings.Builder
		code := simShell(inv, script, io.MultiWriter(out, &buf))
		s.mu.Lock()
		if s.gen == gen {
			s.state.Tasks++
			s.state.LastTask, s.state.LastOutput = script, buf.String()
		}
		s.mu.Unlock()
		return code, nil
	}}
	if err := r.Loop(ctx); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// script fetches the machine's iPXE script, retrying (a real iPXE retries its DHCP and fetch).
func (a *agents) script(ctx context.Context, mac string) (string, error) {
	u := a.cfg.BootURL + "/boot/ipxe?mac=" + url.QueryEscape(mac)
	delay := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		s, err := a.fetch(ctx, u)
		if err == nil {
			return s, nil
		}
		if ctx.Err() != nil || attempt == 20 {
			return "", fmt.Errorf("boot script %s: %w", u, err)
		}
		if err := sleepCtx(ctx, delay); err != nil {
			return "", err
		}
		delay = min(2*delay, 5*time.Second)
	}
}

func (a *agents) fetch(ctx context.Context, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return string(body), nil
}

// kernelLine is the script's kernel command line: the arguments of its "kernel" (or "chain")
// line, which is where the discovery bootenv puts the prybar.* parameters.
func kernelLine(script string) string {
	for _, l := range strings.Split(script, "\n") {
		f := strings.Fields(l)
		if len(f) > 1 && (f[0] == "kernel" || f[0] == "chain" || f[0] == "imgargs") {
			return strings.Join(f[1:], " ")
		}
	}
	return ""
}

var lsRe = regexp.MustCompile(`^\s*ls\s+(\S+)\s*$`)

// simShell answers the scripts a discovery agent is given from the machine's inventory: "ls
// /sys/block" lists its disks, "true"/":"/"" succeed, "false" fails, "echo …" echoes, "exit N"
// exits; anything else is reported as not found (127), as a shell would.
func simShell(inv agent.Inventory, script string, out io.Writer) int {
	code := 0
	for _, line := range strings.Split(script, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		switch {
		case lsRe.MatchString(line) && (f[1] == "/sys/block" || f[1] == "/sys/block/"):
			for _, d := range inv.Disks {
				fmt.Fprintln(out, d.Name)
			}
			code = 0
		case lsRe.MatchString(line) && (f[1] == "/sys/class/net" || f[1] == "/sys/class/net/"):
			for _, n := range inv.NICs {
				fmt.Fprintln(out, n.Name)
			}
			fmt.Fprintln(out, "lo")
			code = 0
		case f[0] == "true" || f[0] == ":":
			code = 0
		case f[0] == "false":
			code = 1
		case f[0] == "echo":
			fmt.Fprintln(out, strings.Join(f[1:], " "))
			code = 0
		case f[0] == "exit":
			n := 0
			if len(f) > 1 {
				_, _ = fmt.Sscan(f[1], &n)
			}
			return n
		default:
			fmt.Fprintf(out, "sh: %s: not found\n", f[0])
			code = 127
		}
	}
	return code
}

// Inventory is what the simulated agent of b's machine reports: for a Redfish BMC its inventory
// as the BMC serves it (the fleet's MACs, serial and UUID; the processor count, memory and disk
// sizes; disks named as Linux names them), so the drift Prybar computes is empty; for an IPMI
// BMC, which reports no hardware, a plausible machine with the fleet's MACs and the BMC's
// System GUID as its SMBIOS UUID.
func (f *Fleet) Inventory(b *BMC) (agent.Inventory, error) {
	if b.Protocol != "redfish" {
		return agent.Inventory{
			DMI: agent.DMI{Vendor: "Prybar", Product: "ipmisim", Serial: b.Serial, UUID: b.UUID},
			CPU: agent.CPU{Count: 2, Model: "Simulated CPU"}, MemoryBytes: 16 << 30,
			NICs: []agent.NIC{
				{Name: "eth0", MAC: ipmiMAC(b.Index, 1), Driver: "sim", SpeedMbps: 10000, Link: true},
				{Name: "eth1", MAC: ipmiMAC(b.Index, 2), Driver: "sim", SpeedMbps: 10000, Link: false},
			},
			Disks: []agent.Disk{{Name: "sda", SizeBytes: 480 << 30, Model: "SIM SSD"}, {Name: "sdb", SizeBytes: 4 << 40, Model: "SIM HDD", Rotational: true}},
		}, nil
	}
	tmpl, err := f.redfishTemplate()
	if err != nil {
		return agent.Inventory{}, err
	}
	inv := agent.Inventory{
		DMI:         agent.DMI{Vendor: tmpl.Manufacturer, Product: tmpl.Model, Serial: b.Serial, UUID: strings.ToLower(b.UUID)},
		CPU:         agent.CPU{Count: tmpl.ProcessorCount},
		MemoryBytes: tmpl.MemoryBytes,
	}
	if len(tmpl.Processors) > 0 {
		inv.CPU.Model = tmpl.Processors[0].Model
	}
	if inv.CPU.Count <= 0 {
		inv.CPU.Count = 1
	}
	for i, n := range tmpl.NICs {
		hw, err := net.ParseMAC(n.MACAddress)
		if err != nil || len(hw) != 6 {
			continue
		}
		hw[2], hw[3] = byte(b.Index>>8), byte(b.Index)
		up := n.LinkUp()
		name := n.Name
		if name == "" {
			name = fmt.Sprintf("eth%d", i)
		}
		inv.NICs = append(inv.NICs, agent.NIC{Name: name, MAC: hw.String(), SpeedMbps: n.SpeedMbps, Link: up != nil && *up, Driver: "sim"})
	}
	if len(inv.NICs) == 0 {
		return agent.Inventory{}, fmt.Errorf("fleet: the mock-up's system reports no NIC, so its agent could not boot")
	}
	for i, d := range tmpl.Disks {
		kind := strings.ToLower(d.Kind)
		name := fmt.Sprintf("sd%c", 'a'+i%26)
		if kind == "nvme" {
			name = fmt.Sprintf("nvme%dn1", i)
		}
		inv.Disks = append(inv.Disks, agent.Disk{Name: name, SizeBytes: max(d.CapacityBytes, 0), Model: d.Model, Serial: d.SerialNumber, Rotational: kind == "hdd"})
	}
	return inv, nil
}

// redfishTemplate reads the mock-up's inventory once, through the Redfish client, from a private
// simulator rewritten as BMC 0 (so the fleet's BMCs' counters are untouched).
func (f *Fleet) redfishTemplate() (*redfish.Inventory, error) {
	a := f.agents
	a.redfishOnce.Do(func() {
		a.redfishTmpl, a.redfishErr = readTemplate(f.cfg)
	})
	return a.redfishTmpl, a.redfishErr
}

func readTemplate(cfg Config) (*redfish.Inventory, error) {
	sim, err := redfishsim.New(redfishsim.Config{MockupDir: cfg.MockupDir, Username: cfg.Username, Password: cfg.Password, PowerDelay: time.Millisecond})
	if err != nil {
		return nil, err
	}
	defer sim.Close()
	b := &BMC{Index: 0, Address: "127.0.0.1", Username: cfg.Username, Password: cfg.Password, Protocol: "redfish", Scheme: "http"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: rewrite(b.Index, identityOf(sim), sim.Handler()), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	b.Port = ln.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := redfish.New(b.Endpoint())
	defer c.Close(ctx)
	return c.Inventory(ctx)
}

// ipmiMAC is IPMI machine index's NIC n: 02:49 ('I'):<index hi>:<index lo>:00:n. Redfish
// machines' MACs carry their own (different) index in the same bytes, so the two never collide.
func ipmiMAC(index, n int) string {
	return net.HardwareAddr{0x02, 0x49, byte(index >> 8), byte(index), 0, byte(n)}.String()
}

// ipmiGUID is IPMI BMC index's System GUID. Its bytes read the same whichever byte order a client
// assumes (IPMI's reversed, SMBIOS's mixed-endian or RFC 4122's), so the UUID Prybar records from
// the BMC and the one the agent reports from SMBIOS are the same string.
func ipmiGUID(index int) [16]byte {
	a, b, c, d := byte(0x50), byte(0x49), byte(index>>8), byte(index)
	return [16]byte{a, b, b, a, c, c, d, d, d, d, c, c, a, b, b, a}
}

func guidString(g [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", g[0:4], g[4:6], g[6:8], g[8:10], g[10:16])
}

// AgentStats summarises the agents.
type AgentStats struct {
	Running       int64 // agents running now
	PXEBoots      int   // network boots so far
	Registered    int   // machines whose agent registered at least once
	Tasks         int   // tasks run
	Errors        int64 // agents that ended with an error
	WithDrift     int   // machines whose last registration reported drift
	LastErrorSeen string
}

func (s AgentStats) String() string {
	return fmt.Sprintf("agents: %d running, %d PXE boots, %d machines registered, %d tasks run, %d with drift, %d errors",
		s.Running, s.PXEBoots, s.Registered, s.Tasks, s.WithDrift, s.Errors)
}

// Agent returns BMC b's agent record (zero without agents).
func (f *Fleet) Agent(b *BMC) AgentState {
	if b.agent == nil {
		return AgentState{}
	}
	b.agent.mu.Lock()
	defer b.agent.mu.Unlock()
	return b.agent.state
}

// AgentStats collects every agent's record.
func (f *Fleet) AgentStats() AgentStats {
	var s AgentStats
	if f.agents == nil {
		return s
	}
	s.Running, s.Errors = f.agents.running.Load(), f.agents.errs.Load()
	for _, b := range f.BMCs {
		st := f.Agent(b)
		s.PXEBoots += st.PXEBoots
		s.Tasks += st.Tasks
		if st.Registrations > 0 {
			s.Registered++
		}
		if len(st.Drift) > 0 {
			s.WithDrift++
		}
		if st.Err != "" {
			s.LastErrorSeen = b.Name + ": " + st.Err
		}
	}
	return s
}
