// Package redfishsim is a stateful Redfish BMC simulator built on DMTF mock-up trees.
//
// A mock-up alone is a static snapshot: it cannot tell a client whether its reset, boot override or
// logout actually happened. The simulator serves the tree unchanged except for the state a real BMC
// would change (power, boot override, virtual media, sessions), enforces authentication and a session
// cap the way small BMCs do, and injects faults (latency, 5xx answers, dropped connections, a BMC that
// silently ignores boot overrides) so the Redfish client can be tested against the behaviour that
// breaks provisioning in practice.
package redfishsim

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prybar/prybar/internal/jsonvalue"
)

const (
	maxOps       = 100_000 // request log entries kept
	root         = "/redfish/v1"
	sessionsPath = root + "/SessionService/Sessions"
)

// Config configures a Simulator.
type Config struct {
	MockupDir   string        // folder mirroring /redfish/v1 (index.json per resource)
	Username    string        // accepted user; empty accepts any user name with Password
	Password    string        // accepted password
	MaxSessions int           // session table size; the next login gets 503 (default 16)
	PowerDelay  time.Duration // how long a reset takes to change PowerState (default 200ms)
	Seed        uint64        // seed of the fault-injection RNG, for reproducible tests (0 means 1)
	// DisableSessionService makes session login answer 405, like BMCs that only speak Basic auth.
	DisableSessionService bool
	// OmitLastResetTime leaves ComputerSystem.LastResetTime out, like BMCs older than schema
	// 1.15: a client that lost a reset's answer then cannot tell whether the reset happened.
	OmitLastResetTime bool
	// OnPower, when set, is told every power transition of a system (its @odata.id): on with the
	// boot that started (its override target) or off. It is called with the simulator's lock
	// held, in transition order, so it must not block or call the simulator.
	OnPower func(system string, on bool, boot Boot)
}

// Faults are injected into every request while set. The zero value injects nothing.
type Faults struct {
	Latency            time.Duration // added before every answer
	ErrorRate          float64       // share of requests answered 500/503 without being processed
	DropRate           float64       // share of requests whose connection is closed without an answer
	IgnoreBootOverride bool          // answer 2xx to a boot PATCH but change nothing
	// RejectBootMode answers 400 to a PATCH that sets BootSourceOverrideMode, like BMCs whose
	// firmware cannot switch between UEFI and legacy per boot.
	RejectBootMode bool

	// Act-then-fail faults hit POST requests (actions and session creation), the ones a client
	// must never repeat blindly: the request IS carried out, and then its answer is lost.
	//
	// AfterActError answers the next N POSTs 500 after carrying them out.
	AfterActError int
	// AfterActDrop closes the connection of the next N POSTs after carrying them out.
	AfterActDrop int
	// AfterActDelay answers every POST this late, after carrying it out at once: a BMC that is
	// slower than the client's timeout.
	AfterActDelay time.Duration
}

// Op is one request as the simulator saw it.
type Op struct {
	Time      time.Time
	Method    string
	Path      string
	ResetType string // for reset actions
	Status    int    // 0 when the connection was dropped; what the client was sent, see Acted
	// Acted is true when the simulator carried the request out (a 2xx outcome), also when an
	// act-then-fail fault then lost or replaced the answer.
	Acted bool
}

type action struct {
	resource  string // path of the resource that advertises the action
	name      string // e.g. "ComputerSystem.Reset"
	allowable []string
}

type session struct {
	id, token, user string
	context         string // the client-supplied Session.Context
	created         time.Time
}

// Simulator is a stateful Redfish service. All methods are safe for concurrent use.
type Simulator struct {
	cfg      Config
	metadata []byte

	mu sync.Mutex
	// base is the mock-up as loaded, shared read-only by every simulator of the same folder; res
	// holds this simulator's own copy of each resource it changed (copy on write: a fleet of
	// thousands of simulators shares one parsed mock-up).
	base      map[string]map[string]any
	res       map[string]map[string]any // resource path -> live resource, once changed
	actions   map[string]action         // action target -> action
	sessions  map[string]*session       // by id
	tokens    map[string]string         // token -> id
	peakSess  int
	faults    Faults
	rng       *mrand.Rand
	ops       []Op
	powerGen  map[string]int // per system; a newer reset supersedes pending transitions
	resets    map[string][]string
	boots     map[string][]Boot
	timers    map[*time.Timer]struct{}
	srv       *http.Server
	closed    bool
	inflight  atomic.Int64
	peakConc  atomic.Int64
	mgrResets int
}

// New loads the mock-up tree. It fails if the folder holds no service root.
func New(cfg Config) (*Simulator, error) {
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 16
	}
	if cfg.PowerDelay <= 0 {
		cfg.PowerDelay = 200 * time.Millisecond
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	s := &Simulator{
		cfg:      cfg,
		res:      map[string]map[string]any{},
		actions:  map[string]action{},
		sessions: map[string]*session{},
		tokens:   map[string]string{},
		powerGen: map[string]int{},
		resets:   map[string][]string{},
		boots:    map[string][]Boot{},
		timers:   map[*time.Timer]struct{}{},
		rng:      mrand.New(mrand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
	}
	if err := s.load(cfg.MockupDir); err != nil {
		return nil, err
	}
	return s, nil
}

// parsedMockup is a parsed mock-up folder.
type parsedMockup struct {
	once     sync.Once
	res      map[string]map[string]any
	metadata []byte
	err      error
}

// mockups caches parsed folders by path: parsing one takes tens of milliseconds and about a
// megabyte, too much to repeat for each of thousands of simulators. The folders are not expected
// to change while a process runs.
var mockups sync.Map // string -> *parsedMockup

func loadMockup(dir string) (*parsedMockup, error) {
	v, _ := mockups.LoadOrStore(dir, &parsedMockup{})
	mk := v.(*parsedMockup)
	mk.once.Do(func() { mk.err = mk.load(dir) })
	return mk, mk.err
}

func (mk *parsedMockup) load(dir string) error {
	mk.res = map[string]map[string]any{}
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		return fmt.Errorf("redfishsim: %s is not a Redfish mock-up (no index.json): %w", dir, err)
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, filepath.Dir(p))
		if err != nil {
			return err
		}
		urlPath := root
		if rel != "." {
			urlPath = root + "/" + filepath.ToSlash(rel)
		}
		switch d.Name() {
		case "index.xml":
			if urlPath == root+"/$metadata" {
				mk.metadata, err = os.ReadFile(p)
			}
			return err
		case "index.json":
		default:
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		// Keep numbers as written: capacities are byte counts that must survive a round trip.
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			return fmt.Errorf("redfishsim: %s: %w", p, err)
		}
		mk.res[urlPath] = m
		return nil
	})
}

// lookup returns the live resource at p (read only: change it through writable).
func (s *Simulator) lookup(p string) (map[string]any, bool) {
	if m, ok := s.res[p]; ok {
		return m, true
	}
	m, ok := s.base[p]
	return m, ok
}

// writable returns this simulator's own copy of the resource at p (nil when there is none).
func (s *Simulator) writable(p string) map[string]any {
	if m, ok := s.res[p]; ok {
		return m
	}
	b, ok := s.base[p]
	if !ok {
		return nil
	}
	m := jsonvalue.Copy(b).(map[string]any)
	s.res[p] = m
	return m
}

func (s *Simulator) load(dir string) error {
	mk, err := loadMockup(dir)
	if err != nil {
		return err
	}
	s.base, s.metadata = mk.res, mk.metadata
	for p, m := range s.base {
		acts, _ := m["Actions"].(map[string]any)
		for k, v := range acts {
			a, ok := v.(map[string]any)
			if !ok || !strings.HasPrefix(k, "#") {
				continue
			}
			target, _ := a["target"].(string)
			if target == "" {
				continue
			}
			s.actions[clean(target)] = action{resource: p, name: strings.TrimPrefix(k, "#"), allowable: stringList(a["ResetType@Redfish.AllowableValues"])}
		}
		// Many BMCs accept the conventional action URIs on virtual media without advertising them;
		// serving them lets a client that knows the convention work while the mock-up stays as is.
		if isType(m, "VirtualMedia") {
			for _, n := range []string{"VirtualMedia.InsertMedia", "VirtualMedia.EjectMedia"} {
				if _, ok := s.actions[p+"/Actions/"+n]; !ok {
					s.actions[p+"/Actions/"+n] = action{resource: p, name: n}
				}
			}
		}
	}
	return nil
}

func stringList(v any) []string {
	l, ok := v.([]any)
	if !ok {
		return nil
	}
	var out []string
	for _, x := range l {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func isType(m map[string]any, typ string) bool {
	t, _ := m["@odata.type"].(string)
	return strings.HasPrefix(t, "#"+typ+".")
}

func clean(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	p = path.Clean("/" + p)
	return p
}

// SetFaults replaces the injected faults; it takes effect for the next request.
func (s *Simulator) SetFaults(f Faults) {
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
}

// OpenSessions is the number of sessions currently held.
func (s *Simulator) OpenSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// PeakSessions is the largest number of sessions held at once.
func (s *Simulator) PeakSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peakSess
}

// PeakConcurrent is the largest number of requests in flight at once.
func (s *Simulator) PeakConcurrent() int { return int(s.peakConc.Load()) }

// ManagerResets counts accepted Manager.Reset actions.
func (s *Simulator) ManagerResets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mgrResets
}

// Ops returns a copy of the request log (the most recent 100k requests).
func (s *Simulator) Ops() []Op {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ops)
}

// Resource returns a deep copy of the live resource at path, or nil.
func (s *Simulator) Resource(p string) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.lookup(clean(p))
	if !ok {
		return nil
	}
	var out map[string]any
	b, _ := json.Marshal(m)
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	_ = dec.Decode(&out)
	return out
}

// Start serves on addr (":0" picks a port) and returns the base URL.
func (s *Simulator) Start(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("redfishsim: listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), nil
}

// Close stops pending power transitions and the server started by Start.
func (s *Simulator) Close() error {
	s.mu.Lock()
	s.closed = true
	for t := range s.timers {
		t.Stop()
	}
	clear(s.timers)
	srv := s.srv
	s.mu.Unlock()
	if srv != nil {
		return srv.Close()
	}
	return nil
}

// Handler serves the Redfish API.
func (s *Simulator) Handler() http.Handler { return http.HandlerFunc(s.serve) }

type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (s *Simulator) serve(w http.ResponseWriter, r *http.Request) {
	n := s.inflight.Add(1)
	defer s.inflight.Add(-1)
	for {
		p := s.peakConc.Load()
		if n <= p || s.peakConc.CompareAndSwap(p, n) {
			break
		}
	}
	p := clean(r.URL.Path)
	op := Op{Time: time.Now(), Method: r.Method, Path: p}

	s.mu.Lock()
	f := s.faults
	drop := f.DropRate > 0 && s.rng.Float64() < f.DropRate
	fail := !drop && f.ErrorRate > 0 && s.rng.Float64() < f.ErrorRate
	var after afterAct
	if r.Method == http.MethodPost && !drop && !fail {
		switch {
		case s.faults.AfterActError > 0:
			s.faults.AfterActError--
			after.err = true
		case s.faults.AfterActDrop > 0:
			s.faults.AfterActDrop--
			after.drop = true
		}
		after.delay = f.AfterActDelay
	}
	s.mu.Unlock()

	if f.Latency > 0 {
		select {
		case <-time.After(f.Latency):
		case <-r.Context().Done():
			return
		}
	}
	if drop {
		s.record(op)
		hangUp(w)
		return
	}
	if after.active() {
		s.serveAfterAct(w, r, p, op, after)
		return
	}
	rec := &recorder{ResponseWriter: w}
	if fail {
		code := http.StatusInternalServerError
		if n%2 == 0 {
			code = http.StatusServiceUnavailable
		}
		writeError(rec, code, "Base.1.0.InternalError", "injected fault")
	} else {
		s.route(rec, r, p, &op)
	}
	op.Status = rec.status
	op.Acted = rec.status >= 200 && rec.status < 300
	s.record(op)
}

// hangUp closes the connection without an answer.
func hangUp(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler) // still aborts the connection where hijacking is impossible
}

// afterAct is the act-then-fail fault chosen for one POST.
type afterAct struct {
	err, drop bool
	delay     time.Duration
}

func (a afterAct) active() bool { return a.err || a.drop || a.delay > 0 }

// bufferedAnswer holds an answer that the simulator computed but has not sent yet.
type bufferedAnswer struct {
	hdr    http.Header
	status int
	body   []byte
}

func (b *bufferedAnswer) Header() http.Header { return b.hdr }
func (b *bufferedAnswer) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}
func (b *bufferedAnswer) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	b.body = append(b.body, p...)
	return len(p), nil
}

// serveAfterAct carries the request out first and only then applies the fault: the state change
// has happened whatever the client hears, which is what makes a blind retry dangerous.
func (s *Simulator) serveAfterAct(w http.ResponseWriter, r *http.Request, p string, op Op, after afterAct) {
	ans := &bufferedAnswer{hdr: http.Header{}}
	s.route(ans, r, p, &op)
	op.Acted = ans.status >= 200 && ans.status < 300
	if after.delay > 0 {
		// The BMC answers late even when the client has given up (a real BMC does not notice
		// either): the answer goes to whoever still listens.
		t := time.NewTimer(after.delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			s.record(op)
			return
		}
	}
	switch {
	case after.drop:
		s.record(op)
		hangUp(w)
		return
	case after.err:
		rec := &recorder{ResponseWriter: w}
		writeError(rec, http.StatusInternalServerError, "Base.1.0.InternalError", "injected fault after the action was carried out")
		op.Status = rec.status
	default:
		for k, v := range ans.hdr {
			w.Header()[k] = v
		}
		w.WriteHeader(ans.status)
		_, _ = w.Write(ans.body)
		op.Status = ans.status
	}
	s.record(op)
}

func (s *Simulator) record(op Op) {
	s.mu.Lock()
	// Bounded so a long-running `prybar sim redfish` does not grow without limit.
	if len(s.ops) >= maxOps {
		s.ops = slices.Delete(s.ops, 0, len(s.ops)-maxOps+1)
	}
	s.ops = append(s.ops, op)
	s.mu.Unlock()
}

func writeError(w http.ResponseWriter, code int, id, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"code": id, "message": msg,
		"@Message.ExtendedInfo": []any{map[string]any{"MessageId": id, "Message": msg}},
	}})
}

func writeJSON(w http.ResponseWriter, code int, v any, etag string) {
	b, _ := json.MarshalIndent(v, "", "    ")
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("OData-Version", "4.0")
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// etagOf derives the ETag from content so it changes exactly when live state does.
func etagOf(m map[string]any) string {
	b, _ := json.Marshal(m)
	sum := sha256.Sum256(b)
	return `"` + hex.EncodeToString(sum[:8]) + `"`
}

func public(method, p string) bool {
	switch p {
	case "/redfish", root, root + "/$metadata", root + "/odata":
		return method == http.MethodGet || method == http.MethodHead
	case sessionsPath:
		return method == http.MethodPost
	}
	return false
}

func (s *Simulator) authorized(r *http.Request) bool {
	if tok := r.Header.Get("X-Auth-Token"); tok != "" {
		s.mu.Lock()
		_, ok := s.tokens[tok]
		s.mu.Unlock()
		return ok
	}
	if u, pw, ok := r.BasicAuth(); ok {
		return s.credentialsOK(u, pw)
	}
	return false
}

func (s *Simulator) credentialsOK(user, pw string) bool {
	uok := s.cfg.Username == "" || subtle.ConstantTimeCompare([]byte(user), []byte(s.cfg.Username)) == 1
	return uok && subtle.ConstantTimeCompare([]byte(pw), []byte(s.cfg.Password)) == 1
}

func (s *Simulator) route(w http.ResponseWriter, r *http.Request, p string, op *Op) {
	if !public(r.Method, p) && !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="redfish"`)
		writeError(w, http.StatusUnauthorized, "Base.1.0.NoValidSession", "authentication required")
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.get(w, p)
	case http.MethodPost:
		if p == sessionsPath {
			s.login(w, r)
			return
		}
		s.post(w, r, p, op)
	case http.MethodPatch:
		s.patch(w, r, p)
	case http.MethodDelete:
		if strings.HasPrefix(p, sessionsPath+"/") {
			s.logout(w, strings.TrimPrefix(p, sessionsPath+"/"))
			return
		}
		writeError(w, http.StatusMethodNotAllowed, "Base.1.0.OperationNotAllowed", "DELETE not allowed on "+p)
	default:
		writeError(w, http.StatusMethodNotAllowed, "Base.1.0.OperationNotAllowed", r.Method+" not allowed")
	}
}

func (s *Simulator) get(w http.ResponseWriter, p string) {
	switch {
	case p == "/redfish":
		writeJSON(w, http.StatusOK, map[string]any{"v1": root + "/"}, "")
		return
	case p == root+"/$metadata" && s.metadata != nil:
		w.Header().Set("Content-Type", "application/xml")
		_, _ = w.Write(s.metadata)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p == sessionsPath {
		members := []any{}
		for _, id := range slices.Sorted(maps.Keys(s.sessions)) {
			members = append(members, map[string]any{"@odata.id": sessionsPath + "/" + id})
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"@odata.type": "#SessionCollection.SessionCollection", "@odata.id": sessionsPath,
			"Name": "Session Collection", "Members": members, "Members@odata.count": len(members),
		}, "")
		return
	}
	if id, ok := strings.CutPrefix(p, sessionsPath+"/"); ok {
		if ss, ok := s.sessions[id]; ok {
			writeJSON(w, http.StatusOK, sessionJSON(ss), "")
		} else {
			writeError(w, http.StatusNotFound, "Base.1.0.ResourceMissingAtURI", "no session "+id)
		}
		return
	}
	m, ok := s.lookup(p)
	if !ok {
		writeError(w, http.StatusNotFound, "Base.1.0.ResourceMissingAtURI", "no resource at "+p)
		return
	}
	writeJSON(w, http.StatusOK, m, etagOf(m))
}

func sessionJSON(ss *session) map[string]any {
	m := map[string]any{
		"@odata.type": "#Session.v1_8_0.Session", "@odata.id": sessionsPath + "/" + ss.id,
		"Id": ss.id, "Name": "User Session", "UserName": ss.user,
		"CreatedTime": ss.created.Format(time.RFC3339),
	}
	if ss.context != "" {
		m["Context"] = ss.context
	}
	return m
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Simulator) login(w http.ResponseWriter, r *http.Request) {
	if s.cfg.DisableSessionService {
		writeError(w, http.StatusMethodNotAllowed, "Base.1.0.OperationNotAllowed", "session service disabled")
		return
	}
	var body struct{ UserName, Password, Context string }
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "Base.1.0.MalformedJSON", err.Error())
		return
	}
	if !s.credentialsOK(body.UserName, body.Password) {
		writeError(w, http.StatusUnauthorized, "Base.1.0.NoValidSession", "invalid credentials")
		return
	}
	s.mu.Lock()
	if len(s.sessions) >= s.cfg.MaxSessions {
		s.mu.Unlock()
		// 503 rather than 4xx because that is what small BMCs answer when their table is full.
		writeError(w, http.StatusServiceUnavailable, "Base.1.0.SessionLimitExceeded",
			fmt.Sprintf("session limit of %d reached", s.cfg.MaxSessions))
		return
	}
	ss := &session{id: randHex(8), token: randHex(16), user: body.UserName, context: body.Context, created: time.Now()}
	s.sessions[ss.id] = ss
	s.tokens[ss.token] = ss.id
	s.peakSess = max(s.peakSess, len(s.sessions))
	s.mu.Unlock()
	w.Header().Set("X-Auth-Token", ss.token)
	w.Header().Set("Location", sessionsPath+"/"+ss.id)
	writeJSON(w, http.StatusCreated, sessionJSON(ss), "")
}

func (s *Simulator) logout(w http.ResponseWriter, id string) {
	s.mu.Lock()
	ss, ok := s.sessions[id]
	if ok {
		delete(s.sessions, id)
		delete(s.tokens, ss.token)
	}
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "Base.1.0.ResourceMissingAtURI", "no session "+id)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func decodeBody(r *http.Request) (map[string]any, error) {
	var m map[string]any
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

var standardResetTypes = []string{"On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart",
	"Nmi", "ForceOn", "PushPowerButton", "PowerCycle"}

func (s *Simulator) post(w http.ResponseWriter, r *http.Request, p string, op *Op) {
	s.mu.Lock()
	a, ok := s.actions[p]
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusMethodNotAllowed, "Base.1.0.OperationNotAllowed", "POST not allowed on "+p)
		return
	}
	body, err := decodeBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "Base.1.0.MalformedJSON", err.Error())
		return
	}
	switch a.name {
	case "ComputerSystem.Reset", "Manager.Reset":
		rt, _ := body["ResetType"].(string)
		op.ResetType = rt
		allowed := a.allowable
		if allowed == nil {
			allowed = standardResetTypes
		}
		if !slices.Contains(allowed, rt) {
			writeError(w, http.StatusBadRequest, "Base.1.0.ActionParameterValueNotInList",
				fmt.Sprintf("ResetType %q is not one of %v", rt, allowed))
			return
		}
		if a.name == "Manager.Reset" {
			s.managerReset(a.resource)
		} else {
			s.systemReset(a.resource, rt)
		}
		w.WriteHeader(http.StatusNoContent)
	case "VirtualMedia.InsertMedia":
		img, _ := body["Image"].(string)
		if img == "" {
			writeError(w, http.StatusBadRequest, "Base.1.0.ActionParameterMissing", "Image is required")
			return
		}
		s.setMedia(a.resource, img, true)
		w.WriteHeader(http.StatusNoContent)
	case "VirtualMedia.EjectMedia":
		s.setMedia(a.resource, "", false)
		w.WriteHeader(http.StatusNoContent)
	default:
		writeError(w, http.StatusNotImplemented, "Base.1.0.ActionNotSupported", a.name+" is not simulated")
	}
}

func (s *Simulator) setMedia(p, img string, inserted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.writable(p)
	m["Inserted"] = inserted
	if inserted {
		m["Image"] = img
		m["ImageName"] = path.Base(img)
	} else {
		m["Image"] = nil
		m["ImageName"] = nil
	}
}

// ForgetSessions drops every session, as a BMC reboot does.
func (s *Simulator) ForgetSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.sessions)
	clear(s.tokens)
}

func (s *Simulator) managerReset(p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mgrResets++
	s.writable(p)["LastResetTime"] = time.Now().UTC().Format(time.RFC3339)
	// A rebooting BMC forgets its sessions; clients must cope with their token vanishing.
	clear(s.sessions)
	clear(s.tokens)
}

// systemReset schedules the power transitions of rt. Each reset bumps the system's generation so a
// transition still pending from an earlier reset cannot overwrite the newer outcome.
func (s *Simulator) systemReset(p, rt string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.powerGen[p]++
	gen := s.powerGen[p]
	sys, _ := s.lookup(p)
	cur, _ := sys["PowerState"].(string)
	// Real BMCs record when the system was last reset; a client that lost the answer to a reset
	// reads it to tell whether the reset happened. Nanoseconds keep quick resets apart.
	if !s.cfg.OmitLastResetTime {
		s.writable(p)["LastResetTime"] = time.Now().UTC().Format(time.RFC3339Nano)
	}
	s.resets[p] = append(s.resets[p], rt)
	d := s.cfg.PowerDelay
	switch rt {
	case "On", "ForceOn":
		s.schedule(p, gen, d, "On")
	case "ForceOff", "GracefulShutdown":
		s.schedule(p, gen, d, "Off")
	case "PowerCycle", "ForceRestart", "GracefulRestart":
		s.schedule(p, gen, d, "Off")
		s.schedule(p, gen, 2*d, "On")
	case "PushPowerButton":
		if cur == "On" {
			s.schedule(p, gen, d, "Off")
		} else {
			s.schedule(p, gen, d, "On")
		}
	}
}

func (s *Simulator) schedule(p string, gen int, d time.Duration, state string) {
	if s.closed {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.timers, t)
		if s.powerGen[p] == gen {
			s.setPower(p, state)
		}
	})
	s.timers[t] = struct{}{}
}

// setPower changes the power state; s.mu is held. A system that comes on boots: it boots from the
// override target while an override is enabled, and a one-time override is then consumed
// (Enabled goes back to Disabled), as the Redfish schema specifies and real BMCs do.
func (s *Simulator) setPower(p, state string) {
	m := s.writable(p)
	prev, _ := m["PowerState"].(string)
	m["PowerState"] = state
	if state != "On" || prev == "On" {
		if state != "On" && prev == "On" && s.cfg.OnPower != nil {
			s.cfg.OnPower(p, false, Boot{})
		}
		return
	}
	b := Boot{Target: "None", Enabled: "Disabled", Time: time.Now()}
	if boot, ok := m["Boot"].(map[string]any); ok {
		b.Mode, _ = boot["BootSourceOverrideMode"].(string)
		if en, _ := boot["BootSourceOverrideEnabled"].(string); en == "Once" || en == "Continuous" {
			b.Target, _ = boot["BootSourceOverrideTarget"].(string)
			b.Enabled = en
			if en == "Once" {
				boot["BootSourceOverrideEnabled"] = "Disabled"
			}
		}
	}
	s.boots[p] = append(s.boots[p], b)
	if s.cfg.OnPower != nil {
		s.cfg.OnPower(p, true, b)
	}
}

// Boot is one boot of a simulated system: the override in force when it came on.
type Boot struct {
	Target  string // BootSourceOverrideTarget used, "None" without an override
	Enabled string // "Once", "Continuous" or "Disabled"
	Mode    string // BootSourceOverrideMode at the time ("UEFI", "Legacy", or "" when absent)
	Time    time.Time
}

// Boots returns the boots of the system at path p (its @odata.id), oldest first.
func (s *Simulator) Boots(p string) []Boot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.boots[clean(p)])
}

// Resets returns the ComputerSystem.Reset types the system at path p carried out, oldest first:
// a test counts power cycles with it.
func (s *Simulator) Resets(p string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.resets[clean(p)])
}

// Sessions returns the Context of every open session (empty for sessions created without one).
func (s *Simulator) Sessions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []string{}
	for _, ss := range s.sessions {
		out = append(out, ss.context)
	}
	slices.Sort(out)
	return out
}

func (s *Simulator) patch(w http.ResponseWriter, r *http.Request, p string) {
	body, err := decodeBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "Base.1.0.MalformedJSON", err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.lookup(p)
	if !ok {
		writeError(w, http.StatusNotFound, "Base.1.0.ResourceMissingAtURI", "no resource at "+p)
		return
	}
	if im := r.Header.Get("If-Match"); im != "" && im != "*" && im != etagOf(m) {
		writeError(w, http.StatusPreconditionFailed, "Base.1.0.PreconditionFailed",
			"If-Match "+im+" does not match the current ETag")
		return
	}
	m = s.writable(p)
	switch {
	case isType(m, "ComputerSystem"):
		err = s.patchSystem(m, body)
	case isType(m, "VirtualMedia"):
		err = patchMedia(m, body)
	default:
		writeError(w, http.StatusMethodNotAllowed, "Base.1.0.OperationNotAllowed", "PATCH not allowed on "+p)
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "Base.1.0.PropertyValueNotInList", err.Error())
		return
	}
	w.Header().Set("ETag", etagOf(m))
	w.WriteHeader(http.StatusNoContent)
}

func oneOf(prop string, v any, allowed []string) (string, error) {
	sv, ok := v.(string)
	if !ok || !slices.Contains(allowed, sv) {
		return "", fmt.Errorf("%s value %v is not one of %v", prop, v, allowed)
	}
	return sv, nil
}

// patchSystem validates the whole body before changing anything, as a PATCH is all or nothing.
func (s *Simulator) patchSystem(m, body map[string]any) error {
	boot, _ := m["Boot"].(map[string]any)
	set := map[string]string{}
	for k, v := range body {
		switch k {
		case "AssetTag", "HostName":
			if _, ok := v.(string); !ok {
				return fmt.Errorf("%s must be a string", k)
			}
		case "Boot":
			b, ok := v.(map[string]any)
			if !ok || boot == nil {
				return errors.New("property Boot must be an object, on a system that has boot properties")
			}
			for bk, bv := range b {
				allowed := stringList(boot[bk+"@Redfish.AllowableValues"])
				switch bk {
				case "BootSourceOverrideTarget":
					if allowed == nil {
						allowed = []string{"None", "Pxe", "Floppy", "Cd", "Usb", "Hdd", "BiosSetup", "Utilities", "Diags", "UefiShell", "UefiTarget", "SDCard", "UefiHttp", "RemoteDrive", "UefiBootNext"}
					}
				case "BootSourceOverrideEnabled":
					if allowed == nil {
						allowed = []string{"Disabled", "Once", "Continuous"}
					}
				case "BootSourceOverrideMode":
					if s.faults.RejectBootMode {
						return errors.New("BootSourceOverrideMode cannot be changed on this system")
					}
					if allowed == nil {
						allowed = []string{"UEFI", "Legacy"}
					}
				default:
					return fmt.Errorf("property Boot/%s is not writable", bk)
				}
				sv, err := oneOf(bk, bv, allowed)
				if err != nil {
					return err
				}
				set[bk] = sv
			}
		default:
			return fmt.Errorf("property %s is not writable", k)
		}
	}
	if s.faults.IgnoreBootOverride {
		return nil
	}
	for k, v := range body {
		if k != "Boot" {
			m[k] = v
		}
	}
	for k, v := range set {
		boot[k] = v
	}
	return nil
}

func patchMedia(m, body map[string]any) error {
	for k, v := range body {
		switch k {
		case "Image":
			if _, ok := v.(string); !ok && v != nil {
				return errors.New("property Image must be a string or null")
			}
		case "Inserted", "WriteProtected":
			if _, ok := v.(bool); !ok {
				return fmt.Errorf("%s must be a boolean", k)
			}
		default:
			return fmt.Errorf("property %s is not writable", k)
		}
	}
	for k, v := range body {
		m[k] = v
		if k == "Image" {
			if img, ok := v.(string); ok {
				m["ImageName"] = path.Base(img)
			} else {
				m["ImageName"] = nil
			}
		}
	}
	return nil
}
