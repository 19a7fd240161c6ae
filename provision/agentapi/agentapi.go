// Package agentapi is the server side of the discovery agent's protocol (see provision/agent for
// the wire types): per-boot tokens, registration with machine matching and drift, the long-poll
// work queue, streamed output and idempotent results. It is mounted at /agent/ and is not
// user-authenticated: every request carries a token scoped to one machine (or, for a machine not
// yet known, one MAC) and one boot, and expiring.
//
// Every report is validated before anything is written: a malformed, oversized or wrongly
// authorised request gets a 4xx answer with a JSON {"error": …} body and changes nothing.
package agentapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/agent"
	"github.com/prybar/prybar/provision/ipxe"
)

// Token scopes. A boot token ("agent/<trace>/<mac>") comes from the kernel command line and only
// registers; registration returns a session token ("agent-session/<trace>") for the machine the
// server matched, which asks for work and reports results. Both are ipxe.Tokens (HMAC, expiring),
// so /boot/done cannot be driven with them (their bootenv never matches a machine's).
const (
	bootScope    = "agent/"
	sessionScope = "agent-session/"
)

// BootToken returns the agent token put on the kernel command line of machine id (0 when unknown,
// then mac scopes it) for the boot trace.
func BootToken(t ipxe.Tokens, id int, mac, trace string, now time.Time) string {
	return t.Issue(id, bootScope+trace+"/"+mac, now)
}

// Server serves /agent/.
type Server struct {
	Store  *store.Store
	Tokens ipxe.Tokens
	// NamePattern names a machine discovered for the first time; "{mac}" is replaced by the boot
	// NIC's MAC without colons. Default "d-{mac}.discovered" (names are fully qualified).
	NamePattern string
	// MaxWait bounds a work long poll (default 25 s).
	MaxWait time.Duration
	// MaxWaiters bounds the work long polls this server holds at once (default 2,000; negative:
	// no bound). Each held poll costs tens of kilobytes (its connection's goroutines and
	// buffers); past the bound a poll looks once, waits at most a second and answers 204 with a
	// Retry-After of about IdleRetry, which the agent sleeps before asking again.
	MaxWaiters int
	// IdleRetry is the Retry-After given past MaxWaiters (default 10 s, ±50 % jitter).
	IdleRetry time.Duration
	Log       *slog.Logger
	Now       func() time.Time

	mu      sync.Mutex
	waiters map[int]chan struct{}
	held    atomic.Int64 // work long polls held now
}

// hold reserves a long-poll slot (false: over MaxWaiters).
func (s *Server) hold() bool {
	limit := s.MaxWaiters
	if limit == 0 {
		limit = 2000
	}
	if limit < 0 {
		s.held.Add(1)
		return true
	}
	if s.held.Add(1) > int64(limit) {
		s.held.Add(-1)
		return false
	}
	return true
}

// retryAfter is the Retry-After, in whole seconds, of a poll past MaxWaiters.
func (s *Server) retryAfter() int {
	d := s.IdleRetry
	if d <= 0 {
		d = 10 * time.Second
	}
	return max(1, int((d/2 + time.Duration(mrand.Int64N(int64(d)))).Seconds()))
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Notify wakes the long polls of machine id (a task was queued for it).
func (s *Server) Notify(id int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch, ok := s.waiters[id]; ok {
		close(ch)
		delete(s.waiters, id)
	}
}

func (s *Server) wait(id int) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiters == nil {
		s.waiters = map[int]chan struct{}{}
	}
	ch, ok := s.waiters[id]
	if !ok {
		ch = make(chan struct{})
		s.waiters[id] = ch
	}
	return ch
}

// httpError is an answer other than success, with its status.
type httpError struct {
	status int
	msg    string
	extra  map[string]any
}

func (e *httpError) Error() string { return e.msg }

func fail(status int, format string, args ...any) *httpError {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) answer(w http.ResponseWriter, r *http.Request, v any, err error) {
	if err == nil {
		if v == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		writeJSON(w, http.StatusOK, v)
		return
	}
	var he *httpError
	if !errors.As(err, &he) {
		s.log().Error("agent api", "path", r.URL.Path, "err", err)
		he = &httpError{status: http.StatusInternalServerError, msg: "internal error (logged)"}
	} else {
		s.log().Warn("agent request refused", "path", r.URL.Path, "status", he.status, "err", he.msg, "client", r.RemoteAddr)
	}
	body := map[string]any{"error": he.msg}
	for k, v := range he.extra {
		body[k] = v
	}
	writeJSON(w, he.status, body)
}

// ServeHTTP routes /agent/register, /agent/work, /agent/output and /agent/result.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var v any
	var err error
	switch r.URL.Path {
	case "/agent/register":
		v, err = s.register(r)
	case "/agent/work":
		v, err = s.work(w, r)
	case "/agent/output":
		err = s.output(r)
	case "/agent/result":
		v, err = s.result(r)
	default:
		err = fail(http.StatusNotFound, "no such agent endpoint %q", r.URL.Path)
	}
	if t, ok := v.(*agent.Task); ok && t == nil {
		v = nil
	}
	s.answer(w, r, v, err)
}

func method(r *http.Request, m string) error {
	if r.Method != m {
		return fail(http.StatusMethodNotAllowed, "%s only", m)
	}
	return nil
}

func bearer(r *http.Request) string {
	return strings.TrimSpace(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
}

// readBody reads at most agent.MaxReport bytes; more is 413.
func readBody(r *http.Request) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r.Body, agent.MaxReport+1))
	if err != nil {
		return nil, fail(http.StatusBadRequest, "reading the body: %v", err)
	}
	if len(data) > agent.MaxReport {
		return nil, fail(http.StatusRequestEntityTooLarge, "report larger than %d bytes", agent.MaxReport)
	}
	return data, nil
}

// decode parses exactly one JSON value into v, refusing unknown fields and trailing data.
func decode(data []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fail(http.StatusBadRequest, "malformed JSON: %v", err)
	}
	if dec.More() {
		return fail(http.StatusBadRequest, "malformed JSON: data after the report")
	}
	return nil
}

// session is a verified session token.
type session struct {
	machine int
	trace   string
}

func (s *Server) session(r *http.Request) (session, error) {
	id, scope, err := s.Tokens.Verify(bearer(r), s.now())
	if err != nil || !strings.HasPrefix(scope, sessionScope) || id <= 0 {
		return session{}, fail(http.StatusUnauthorized, "invalid or expired agent session token")
	}
	return session{machine: id, trace: strings.TrimPrefix(scope, sessionScope)}, nil
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
