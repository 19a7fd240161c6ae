package ipxe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Backend is what the boot HTTP handler needs from the inventory (DB implements it on the store).
type Backend interface {
	// Machine returns the template data of the machine with NIC mac (when mac is set) or with id,
	// and the name of its bootenv. ErrUnknownMachine when there is none.
	Machine(ctx context.Context, mac string, id int) (Data, error)
	// Bootenv returns the stored bootenv called name; ErrUnknownBootenv when there is none.
	Bootenv(ctx context.Context, name string) (*Bootenv, error)
	// MachineByIP returns the id of the machine using addr (0 when unknown).
	MachineByIP(ctx context.Context, addr netip.Addr) int
	// Done flips machine id from bootenv env to local; false when it is no longer in env.
	Done(ctx context.Context, id int, env string) (bool, error)
	// Record appends an event (boot.http, boot.done …) about machine id (0: unknown).
	Record(ctx context.Context, kind string, machineID int, changes map[string]any)
}

// Errors of Backend.
var (
	ErrUnknownMachine = errors.New("unknown machine")
	ErrUnknownBootenv = errors.New("unknown bootenv")
)

// Handler serves /boot/ipxe, /boot/template/<name>, /boot/assets/<path> and /boot/done.
type Handler struct {
	Backend Backend
	Tokens  Tokens
	// Assets is the confined asset tree (OpenAssets); nil answers 404 to every asset.
	Assets *os.Root
	// BaseURL is put into scripts ("http://10.0.0.1:8081"); empty: derived from each request's
	// Host header.
	BaseURL string
	Log     *slog.Logger
	Now     func() time.Time

	recent recentBoots
}

// OpenAssets opens dir as the asset root: paths resolve inside it and symbolic links leading out
// are refused.
func OpenAssets(dir string) (*os.Root, error) { return os.OpenRoot(dir) }

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Handler) log() *slog.Logger {
	if h.Log != nil {
		return h.Log
	}
	return slog.New(slog.DiscardHandler)
}

// ServeHTTP routes the /boot/ paths.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch p := r.URL.Path; {
	case p == "/boot/ipxe":
		h.script(w, r)
	case strings.HasPrefix(p, "/boot/template/"):
		h.template(w, r, strings.TrimPrefix(p, "/boot/template/"))
	case strings.HasPrefix(p, "/boot/assets/"):
		h.asset(w, r, strings.TrimPrefix(p, "/boot/assets/"))
	case p == "/boot/done":
		h.done(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (h *Handler) baseURL(r *http.Request) string {
	if h.BaseURL != "" {
		return strings.TrimSuffix(h.BaseURL, "/")
	}
	return "http://" + r.Host
}

func clientAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// NormalizeMAC accepts 52:54:00:AB:CD:EF, 52-54-00-ab-cd-ef or 525400abcdef and returns the
// lower-case colon form the inventory stores.
func NormalizeMAC(s string) (string, error) {
	if hw, err := net.ParseMAC(s); err == nil && len(hw) == 6 {
		return hw.String(), nil
	}
	if len(s) == 12 {
		if hw, err := net.ParseMAC(s[0:2] + ":" + s[2:4] + ":" + s[4:6] + ":" + s[6:8] + ":" + s[8:10] + ":" + s[10:12]); err == nil {
			return hw.String(), nil
		}
	}
	return "", fmt.Errorf("bad MAC address %q", s)
}

// Render renders the script of the machine asked for by mac or id: the data the backend gives,
// the machine's bootenv, a fresh token. An unknown MAC gets the discovery bootenv (machine id 0),
// so a new machine reaches the discovery image. The error is for the caller to log; the script
// returned is then an error script.
func (h *Handler) Render(ctx context.Context, mac string, id int, base string) (script, env string, machineID int, err error) {
	return h.RenderTrace(ctx, mac, id, base, "")
}

// NewTrace returns a fresh boot trace id.
func NewTrace() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var traceRE = regexp.MustCompile(`^[0-9a-zA-Z_-]{1,64}$`)

// RenderTrace is Render for the boot trace (empty: a new one). Every script carries an agent
// token, also for an unknown machine (scoped to its MAC), so the discovery agent can register.
func (h *Handler) RenderTrace(ctx context.Context, mac string, id int, base, trace string) (script, env string, machineID int, err error) {
	if !traceRE.MatchString(trace) {
		trace = NewTrace()
	}
	d, err := h.Backend.Machine(ctx, mac, id)
	switch {
	case errors.Is(err, ErrUnknownMachine) && mac != "":
		d = Data{Machine: Machine{Name: "unknown-" + strings.ReplaceAll(mac, ":", ""), Bootenv: Discovery}, NIC: NIC{MAC: mac}}
	case err != nil:
		return ErrorScript(err.Error()), "", 0, err
	}
	env = d.Machine.Bootenv
	b, err := h.Backend.Bootenv(ctx, env)
	if err != nil {
		return ErrorScript(fmt.Sprintf("bootenv %q: %v", env, err)), env, d.Machine.ID, err
	}
	d.BaseURL = base
	if d.Machine.ID != 0 {
		d.Token = h.Tokens.Issue(d.Machine.ID, env, h.now())
	}
	d.Trace = trace
	d.AgentToken = h.Tokens.IssueAgent(d.Machine.ID, mac, trace, h.now())
	s, err := Script(b, d)
	if err != nil {
		return ErrorScript(err.Error()), env, d.Machine.ID, err
	}
	return s, env, d.Machine.ID, nil
}

func (h *Handler) script(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	q := r.URL.Query()
	var mac string
	var id int
	var err error
	if m := q.Get("mac"); m != "" {
		mac, err = NormalizeMAC(m)
	} else if s := q.Get("machine"); s != "" {
		id, err = strconv.Atoi(s)
		if err != nil || id <= 0 {
			err = fmt.Errorf("bad machine id %q", s)
		}
	} else {
		err = errors.New("ask with ?mac=… or ?machine=ID")
	}
	var script, env string
	var machineID int
	// The boot's trace (from the DHCP answer's URL, else a new one) also goes into the event, so
	// the timeline ties this fetch to the DHCP exchange before it.
	trace := q.Get("trace")
	if !traceRE.MatchString(trace) {
		trace = NewTrace()
	}
	if err == nil {
		script, env, machineID, err = h.RenderTrace(r.Context(), mac, id, h.baseURL(r), trace)
	} else {
		script = ErrorScript(err.Error())
	}
	status := http.StatusOK
	if err != nil {
		// iPXE executes only a 200 body; anything else it reports as a download failure. An error
		// script with 200 shows the reason on the machine's console.
		h.log().Warn("boot script", "mac", mac, "machine", id, "err", err)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	n, _ := w.Write([]byte(script))
	ch := map[string]any{"path": r.URL.Path, "what": "script", "status": status, "bytes": n, "start": start.UTC().Format(time.RFC3339Nano),
		"client": clientAddr(r).String(), "duration_ms": time.Since(start).Milliseconds(), "trace": trace}
	if mac != "" {
		ch["mac"] = mac
	}
	if env != "" {
		ch["bootenv"] = env
	}
	if err != nil {
		ch["error"] = err.Error()
	}
	h.recent.put(clientAddr(r), machineID, h.now())
	h.Backend.Record(r.Context(), "boot.http", machineID, ch)
}

// machineAt attributes a request from addr: the machine with that allocation, else the machine
// that fetched a script from addr lately.
func (h *Handler) machineAt(r *http.Request) int {
	a := clientAddr(r)
	// Asked after the answer has gone out, when a client that hangs up at once (curl, iPXE) has
	// already cancelled the request's context: the look-up must not fail with it, or the fetch is
	// recorded without its machine (TestAssetsWithCurl caught this about one run in five).
	if id := h.Backend.MachineByIP(context.WithoutCancel(r.Context()), a); id != 0 {
		return id
	}
	return h.recent.get(a, h.now())
}

func (h *Handler) template(w http.ResponseWriter, r *http.Request, name string) {
	q := r.URL.Query()
	tokID, tokEnv, err := h.Tokens.Verify(q.Get("token"), h.now())
	if err != nil || strconv.Itoa(tokID) != q.Get("machine") {
		http.Error(w, "invalid or expired boot token", http.StatusForbidden)
		h.Backend.Record(r.Context(), "boot.http", 0, map[string]any{"path": r.URL.Path, "what": "template", "status": http.StatusForbidden, "client": clientAddr(r).String()})
		return
	}
	d, err := h.Backend.Machine(r.Context(), "", tokID)
	if err == nil && d.Machine.Bootenv != tokEnv {
		err = fmt.Errorf("machine is now in bootenv %q, not %q", d.Machine.Bootenv, tokEnv)
	}
	var b *Bootenv
	if err == nil {
		b, err = h.Backend.Bootenv(r.Context(), tokEnv)
	}
	var out string
	if err == nil {
		d.BaseURL, d.Token = h.baseURL(r), q.Get("token")
		out, err = RenderTemplate(b, name, d)
	}
	ch := map[string]any{"path": r.URL.Path, "what": "template", "template": name, "bootenv": tokEnv, "client": clientAddr(r).String()}
	if err != nil {
		status := http.StatusInternalServerError
		if b != nil && b.Templates[name] == "" {
			status = http.StatusNotFound
		}
		http.Error(w, err.Error(), status)
		ch["status"], ch["error"] = status, err.Error()
		h.Backend.Record(r.Context(), "boot.http", tokID, ch)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	n, _ := w.Write([]byte(out))
	ch["status"], ch["bytes"] = http.StatusOK, n
	h.Backend.Record(r.Context(), "boot.http", tokID, ch)
}

// countingWriter counts the body bytes ServeContent writes (a Range answer writes a part).
type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (c *countingWriter) WriteHeader(s int) { c.status = s; c.ResponseWriter.WriteHeader(s) }
func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (h *Handler) asset(w http.ResponseWriter, r *http.Request, p string) {
	start := time.Now()
	cw := &countingWriter{ResponseWriter: w, status: http.StatusOK}
	err := h.serveAsset(cw, r, p)
	ch := map[string]any{"path": r.URL.Path, "what": "asset", "asset": p, "status": cw.status, "bytes": cw.n, "start": start.UTC().Format(time.RFC3339Nano),
		"client": clientAddr(r).String(), "duration_ms": time.Since(start).Milliseconds()}
	if rg := r.Header.Get("Range"); rg != "" {
		ch["range"] = rg
	}
	if err != nil {
		ch["error"] = err.Error()
	}
	h.Backend.Record(context.WithoutCancel(r.Context()), "boot.http", h.machineAt(r), ch)
}

func (h *Handler) serveAsset(w http.ResponseWriter, r *http.Request, p string) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return errors.New("method not allowed")
	}
	if h.Assets == nil || !fs.ValidPath(p) || p == "." {
		http.NotFound(w, r)
		return fmt.Errorf("asset %q refused", p)
	}
	f, err := h.Assets.Open(p)
	if err != nil {
		http.NotFound(w, r)
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		http.NotFound(w, r)
		return fmt.Errorf("asset %q is not a file", p)
	}
	// A strong validator from size and modification time: replacing a kernel changes it, and no
	// read of the (possibly large) file is needed to compute it.
	w.Header().Set("ETag", fmt.Sprintf(`"%x-%x"`, st.Size(), st.ModTime().UnixNano()))
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, st.Name(), st.ModTime(), f)
	return nil
}

func (h *Handler) done(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	tok := r.URL.Query().Get("token")
	if tok == "" {
		tok = strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	}
	id, env, err := h.Tokens.Verify(tok, h.now())
	if err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		h.Backend.Record(r.Context(), "boot.http", 0, map[string]any{"path": r.URL.Path, "what": "done", "status": http.StatusForbidden, "client": clientAddr(r).String()})
		return
	}
	flipped, err := h.Backend.Done(r.Context(), id, env)
	if err != nil {
		h.log().Error("boot done", "machine", id, "err", err)
		http.Error(w, "cannot record completion", http.StatusInternalServerError)
		return
	}
	if !flipped {
		// Already done (a retried callback) or sent elsewhere since: nothing to change.
		http.Error(w, fmt.Sprintf("machine %d is no longer in bootenv %s", id, env), http.StatusConflict)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
