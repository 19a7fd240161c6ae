// Package fleet runs a fleet of simulated BMCs in one process — Redfish BMCs (redfishsim serving a
// DMTF mock-up, each on its own HTTP server) and IPMI BMCs (ipmisim, each on its own UDP port),
// all on 127.0.0.1 — and registers the machines behind them in a running Prybar through its
// GraphQL API. It exists to exercise the annealer and the out-of-band executor at fleet scale
// without hardware, and its per-BMC counters (peak concurrent operations, peak sessions) are how
// tests prove that Prybar never overloads a single BMC.
//
// Every Redfish BMC serves the same mock-up, but a real fleet has unique MAC addresses (Prybar
// enforces it), so each simulator's answers are rewritten on the way out: every MAC address in a
// response body becomes one derived from the BMC's index (see MAC). Nothing else is rewritten.
package fleet

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/prybar/prybar/provision/bmc"
	"github.com/prybar/prybar/provision/ipmi/ipmisim"
	"github.com/prybar/prybar/provision/redfish/redfishsim"
	"github.com/prybar/prybar/scheduler/executor"
)

// Config describes a fleet.
type Config struct {
	Machines int // number of BMCs (one machine each)
	// FirstIndex is the index of the first BMC (default 0): fleets in several processes, each
	// with its own range, form one fleet (names, MACs, GUIDs and rack positions derive from it).
	FirstIndex   int
	RedfishShare float64 // share of Redfish BMCs, 0..1; the rest are IPMI. Negative means 0.
	MockupDir    string  // Redfish mock-up served by every Redfish BMC (required when any)
	// PowerDelay is how long a power change takes on every BMC (default 200ms).
	PowerDelay time.Duration
	// CommandLatency delays every IPMI command, so overlapping operations become visible in the
	// counters (default 0).
	CommandLatency time.Duration
	Username       string // default "admin"
	Password       string // default "password"
	MaxSessions    int    // Redfish session table size (default 16); IPMI keeps its default (4)
	Domain         string // machine names are sim-NNNN.<Domain> (default "fleet.sim")
	PoweredOn      bool   // IPMI machines start powered on (Redfish ones start as the mock-up says)
	Faults         redfishsim.Faults
	// Agents, when set, puts a simulated machine with a discovery agent behind every BMC: a
	// boot from the network starts its agent (see AgentConfig).
	Agents *AgentConfig
}

// BMC is one simulated BMC and the machine behind it.
type BMC struct {
	Index    int
	Name     string // the machine's FQDN
	Protocol string // "redfish" or "ipmi"
	Address  string
	Port     int
	Scheme   string // "http" for Redfish, "" for IPMI
	Username string
	Password string

	// Serial and UUID identify the machine as its BMC reports them (Redfish: the mock-up's,
	// made unique per BMC; IPMI: no serial from the BMC, the System GUID as UUID) and as its
	// simulated agent reports them from SMBIOS.
	Serial, UUID string

	Redfish *redfishsim.Simulator // nil for IPMI
	IPMI    *ipmisim.BMC          // nil for Redfish
	srv     *http.Server
	agent   *agentSlot
}

// Key is the BMC's concurrency key ("address:port"), as bmc.Endpoint.Key spells it.
func (b *BMC) Key() string { return net.JoinHostPort(b.Address, strconv.Itoa(b.Port)) }

// Endpoint returns how to reach the BMC.
func (b *BMC) Endpoint() bmc.Endpoint {
	return bmc.Endpoint{Protocol: b.Protocol, Address: b.Address, Port: b.Port, Scheme: b.Scheme, Username: b.Username, Password: b.Password}
}

// ExecutorBMC returns the BMC as an executor input carries it.
func (b *BMC) ExecutorBMC() *executor.BMC {
	ep := b.Endpoint()
	return &ep
}

// Fleet is a running set of simulated BMCs.
type Fleet struct {
	cfg    Config
	BMCs   []*BMC
	agents *agents
}

// Start starts cfg.Machines BMCs. Redfish and IPMI BMCs are interleaved (by index) so any prefix
// of the fleet has the configured mix. On error everything started so far is stopped.
func Start(cfg Config) (_ *Fleet, err error) {
	if cfg.Machines < 0 {
		return nil, errors.New("fleet: negative machine count")
	}
	if cfg.RedfishShare < 0 {
		cfg.RedfishShare = 0
	}
	if cfg.RedfishShare > 1 {
		cfg.RedfishShare = 1
	}
	if cfg.PowerDelay <= 0 {
		cfg.PowerDelay = 200 * time.Millisecond
	}
	if cfg.Username == "" {
		cfg.Username = "admin"
	}
	if cfg.Password == "" {
		cfg.Password = "password"
	}
	if cfg.Domain == "" {
		cfg.Domain = "fleet.sim"
	}
	f := &Fleet{cfg: cfg}
	if cfg.Agents != nil {
		if f.agents, err = newAgents(*cfg.Agents, cfg.Machines); err != nil {
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			_ = f.Close()
		}
	}()
	if cfg.FirstIndex < 0 || cfg.FirstIndex+cfg.Machines > 1<<16 {
		return nil, errors.New("fleet: BMC indices must lie in 0..65535 (they are encoded in MAC addresses)")
	}
	for i := cfg.FirstIndex; i < cfg.FirstIndex+cfg.Machines; i++ {
		// Bresenham-style interleave: BMC i is Redfish when the running Redfish count steps up.
		redfish := int(float64(i+1)*cfg.RedfishShare) > int(float64(i)*cfg.RedfishShare)
		b := &BMC{Index: i, Name: fmt.Sprintf("sim-%04d.%s", i, cfg.Domain), Address: "127.0.0.1",
			Username: cfg.Username, Password: cfg.Password, agent: &agentSlot{}}
		if redfish {
			err = f.startRedfish(b)
		} else {
			err = f.startIPMI(b)
		}
		if err != nil {
			return nil, fmt.Errorf("fleet: BMC %d: %w", i, err)
		}
		f.BMCs = append(f.BMCs, b)
	}
	return f, nil
}

func (f *Fleet) startRedfish(b *BMC) error {
	if f.cfg.MockupDir == "" {
		return errors.New("a Redfish mock-up folder is required (MockupDir)")
	}
	rc := redfishsim.Config{
		MockupDir: f.cfg.MockupDir, Username: b.Username, Password: b.Password,
		MaxSessions: f.cfg.MaxSessions, PowerDelay: f.cfg.PowerDelay, Seed: uint64(b.Index + 1),
	}
	if f.agents != nil {
		rc.OnPower = func(_ string, on bool, boot redfishsim.Boot) { f.power(b, on, boot.Target == "Pxe") }
	}
	sim, err := redfishsim.New(rc)
	if err != nil {
		return err
	}
	sim.SetFaults(f.cfg.Faults)
	id := identityOf(sim)
	b.Serial, b.UUID = id.serialOf(b.Index), id.uuidOf(b.Index)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = sim.Close()
		return err
	}
	srv := &http.Server{Handler: rewrite(b.Index, id, sim.Handler()), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	b.Protocol, b.Scheme, b.Port = "redfish", "http", ln.Addr().(*net.TCPAddr).Port
	b.Redfish, b.srv = sim, srv
	return nil
}

func (f *Fleet) startIPMI(b *BMC) error {
	guid := ipmiGUID(b.Index)
	ic := ipmisim.Config{
		User: b.Username, Password: b.Password, PoweredOn: f.cfg.PoweredOn,
		PowerDelay: f.cfg.PowerDelay, CommandLatency: f.cfg.CommandLatency, GUID: guid,
	}
	if f.agents != nil {
		ic.OnPower = func(on bool, dev bmc.BootDevice) { f.power(b, on, dev == bmc.BootPXE) }
	}
	b.UUID = guidString(guid)
	b.Serial = fmt.Sprintf("SIM-IPMI-%05d", b.Index)
	sim := ipmisim.New(ic)
	if err := sim.Start(); err != nil {
		return err
	}
	b.Protocol, b.Port, b.IPMI = "ipmi", sim.Port(), sim
	return nil
}

// Close stops every agent, then every BMC.
func (f *Fleet) Close() error {
	if f.agents != nil {
		f.agents.close()
	}
	var errs []error
	for _, b := range f.BMCs {
		if b.srv != nil {
			errs = append(errs, b.srv.Close())
		}
		if b.Redfish != nil {
			errs = append(errs, b.Redfish.Close())
		}
		if b.IPMI != nil {
			errs = append(errs, b.IPMI.Close())
		}
	}
	return errors.Join(errs...)
}

// ByKey returns the BMC with the given "address:port", or nil.
func (f *Fleet) ByKey(key string) *BMC {
	for _, b := range f.BMCs {
		if b.Key() == key {
			return b
		}
	}
	return nil
}

// BMCStats are one BMC's counters, as the simulator saw things.
type BMCStats struct {
	Name           string
	Protocol       string
	Key            string
	Ops            int64 // Redfish: HTTP requests; IPMI: chassis commands and BMC resets
	PeakConcurrent int64 // most requests (Redfish) or commands (IPMI) in flight at once
	PeakSessions   int64 // most sessions held at once
	OpenSessions   int64 // sessions held now (leaks show here)
	Power          string
}

// Stats summarises the fleet.
type Stats struct {
	BMCs              []BMCStats
	Redfish, IPMI     int
	TotalOps          int64
	MaxPeakConcurrent int64 // over all BMCs: 1 means no BMC ever saw two operations at once
	MaxPeakSessions   int64
	OpenSessions      int64
}

// Stats collects every BMC's counters.
func (f *Fleet) Stats() Stats {
	var s Stats
	for _, b := range f.BMCs {
		bs := BMCStats{Name: b.Name, Protocol: b.Protocol, Key: b.Key()}
		if b.Redfish != nil {
			s.Redfish++
			bs.Ops = int64(len(b.Redfish.Ops()))
			bs.PeakConcurrent = int64(b.Redfish.PeakConcurrent())
			bs.PeakSessions = int64(b.Redfish.PeakSessions())
			bs.OpenSessions = int64(b.Redfish.OpenSessions())
			if sys := systemOf(b.Redfish); sys != nil {
				bs.Power, _ = sys["PowerState"].(string)
			}
		} else {
			s.IPMI++
			bs.Ops = b.IPMI.Ops()
			bs.PeakConcurrent = b.IPMI.PeakInFlight()
			bs.PeakSessions = b.IPMI.PeakSessions()
			bs.OpenSessions = int64(b.IPMI.Sessions())
			bs.Power = string(b.IPMI.Power())
		}
		s.TotalOps += bs.Ops
		s.MaxPeakConcurrent = max(s.MaxPeakConcurrent, bs.PeakConcurrent)
		s.MaxPeakSessions = max(s.MaxPeakSessions, bs.PeakSessions)
		s.OpenSessions += bs.OpenSessions
		s.BMCs = append(s.BMCs, bs)
	}
	return s
}

// String is a one-paragraph summary.
func (s Stats) String() string {
	return fmt.Sprintf("%d BMCs (%d Redfish, %d IPMI): %d operations, peak concurrent per BMC %d, peak sessions per BMC %d, %d sessions open",
		len(s.BMCs), s.Redfish, s.IPMI, s.TotalOps, s.MaxPeakConcurrent, s.MaxPeakSessions, s.OpenSessions)
}

// systemOf returns the simulator's first ComputerSystem.
func systemOf(sim *redfishsim.Simulator) map[string]any {
	col := sim.Resource("/redfish/v1/Systems")
	ms, _ := col["Members"].([]any)
	if len(ms) == 0 {
		return nil
	}
	p, _ := ms[0].(map[string]any)["@odata.id"].(string)
	return sim.Resource(p)
}

// SystemPath is the Redfish path of the BMC's first system ("" for IPMI).
func (b *BMC) SystemPath() string {
	if b.Redfish == nil {
		return ""
	}
	ms, _ := b.Redfish.Resource("/redfish/v1/Systems")["Members"].([]any)
	if len(ms) == 0 {
		return ""
	}
	p, _ := ms[0].(map[string]any)["@odata.id"].(string)
	return p
}

var macRe = regexp.MustCompile(`\b[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){4}\b`)

// MAC derives BMC index's version of a mock-up MAC: a locally administered address
// 02:<b2^b3>:<index hi>:<index lo>:<b4>:<b5>. Distinct indices never collide; within one BMC the
// mock-up's MACs stay distinct as long as they differ in bytes 2–5 (true for the DMTF mock-ups).
func MAC(index int, orig string) string {
	hw, err := net.ParseMAC(orig)
	if err != nil || len(hw) != 6 {
		return orig
	}
	return net.HardwareAddr{0x02, hw[2] ^ hw[3], byte(index >> 8), byte(index), hw[4], hw[5]}.String()
}

// identity is the mock-up system's serial number and UUID, which every Redfish BMC of the fleet
// would otherwise share: Prybar matches discovery agents to machines by them, so each BMC's
// answers carry its own (serialOf, uuidOf).
type identity struct {
	serial, uuid string
	serialRe     *regexp.Regexp // "SerialNumber": "<serial>" in a body
}

func identityOf(sim *redfishsim.Simulator) identity {
	var id identity
	if sys := systemOf(sim); sys != nil {
		id.serial, _ = sys["SerialNumber"].(string)
		id.uuid, _ = sys["UUID"].(string)
	}
	if id.serial != "" {
		id.serialRe = regexp.MustCompile(`"SerialNumber"\s*:\s*"` + regexp.QuoteMeta(id.serial) + `"`)
	}
	return id
}

func (id identity) serialOf(index int) string {
	if id.serial == "" {
		return ""
	}
	return fmt.Sprintf("%s-%05d", id.serial, index)
}

// uuidOf replaces the UUID's last group with the index (a UUID that is not the canonical 36
// characters is left alone).
func (id identity) uuidOf(index int) string {
	if len(id.uuid) != 36 {
		return id.uuid
	}
	return id.uuid[:24] + fmt.Sprintf("%012x", index)
}

// rewrite buffers each answer and replaces the MAC addresses, the system's serial number and its
// UUID in it. Hijacking (the simulator's dropped-connection fault) passes straight through.
func rewrite(index int, id identity, next http.Handler) http.Handler {
	var serialTo, uuidFrom, uuidTo []byte
	if id.serialRe != nil {
		serialTo = []byte(`"SerialNumber":"` + id.serialOf(index) + `"`)
	}
	if len(id.uuid) == 36 {
		uuidFrom, uuidTo = []byte(`"`+id.uuid+`"`), []byte(`"`+id.uuidOf(index)+`"`)
	}
	var cache sync.Map // original MAC -> rewritten
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bw := &bufferedWriter{ResponseWriter: w, header: http.Header{}}
		next.ServeHTTP(bw, r)
		if bw.hijacked {
			return
		}
		body := macRe.ReplaceAllFunc(bw.buf.Bytes(), func(m []byte) []byte {
			if v, ok := cache.Load(string(m)); ok {
				return v.([]byte)
			}
			v := []byte(MAC(index, string(m)))
			cache.Store(string(m), v)
			return v
		})
		if serialTo != nil {
			body = id.serialRe.ReplaceAllLiteral(body, serialTo)
		}
		if uuidFrom != nil {
			body = bytes.ReplaceAll(body, uuidFrom, uuidTo)
		}
		for k, v := range bw.header {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		if len(body) > 0 {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		w.WriteHeader(max(bw.status, 0))
		_, _ = w.Write(body)
	})
}

type bufferedWriter struct {
	http.ResponseWriter
	header   http.Header
	buf      bytes.Buffer
	status   int
	hijacked bool
}

func (w *bufferedWriter) Header() http.Header { return w.header }

func (w *bufferedWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *bufferedWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.buf.Write(b)
}

func (w *bufferedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("fleet: hijacking not supported")
	}
	w.hijacked = true
	return hj.Hijack()
}
