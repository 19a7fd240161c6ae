// Package redfish is Prybar's Redfish client: power, boot override, BMC reset, virtual media and
// hardware inventory over the DMTF Redfish REST API.
//
// BMCs are small, slow and inconsistent, so the client is defensive where real fleets hurt: it holds
// at most one session and always gives it back (BMC session tables are tiny and a leak locks
// operators out), it retries only what is safe to retry (5xx and connection errors, never 4xx), it
// picks reset types from what the BMC says it allows rather than assuming, and it re-reads a boot
// override after setting it because some firmware answers 2xx and changes nothing.
package redfish

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prybar/prybar/provision/bmc"
)

var _ bmc.Controller = (*Client)(nil)

var (
	// ErrOverrideIgnored means the BMC accepted a boot override but a re-read shows it did not take.
	ErrOverrideIgnored = errors.New("redfish: boot override did not take")
	// ErrSessionLimit means the BMC kept refusing a new session, usually because its session table
	// is full of sessions that other clients never logged out of.
	ErrSessionLimit = errors.New("redfish: BMC refused a new session (session limit reached?)")
)

// ErrUnreachable is wrapped into every error where the BMC gave no HTTP answer at all: the
// connection was refused, dropped or timed out. A caller polling a BMC stops after a few of these
// in a row (errors.Is(err, redfish.ErrUnreachable)) instead of waiting out its whole deadline.
var ErrUnreachable = errors.New("no answer from the BMC")

// ErrOutcomeUnknown means a request that must not be repeated (a reset, a session login) may or
// may not have been carried out: its answer was lost and the BMC's state could not tell. The
// client does not re-send it; an operator (or a later read) has to decide.
var ErrOutcomeUnknown = errors.New("redfish: outcome unknown, not re-sent")

// HTTPError is a non-2xx answer that was not (or no longer) worth retrying.
type HTTPError struct {
	Method     string
	Path       string
	StatusCode int
	Message    string // the Redfish error message, when the body carried one
}

func (e *HTTPError) Error() string {
	msg := fmt.Sprintf("redfish: %s %s: %d %s", e.Method, e.Path, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

func statusOf(err error) int {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.StatusCode
	}
	return 0
}

type config struct {
	timeout       time.Duration
	attempts      int
	backoff       time.Duration
	maxBackoff    time.Duration
	logoutTimeout time.Duration
	pollInterval  time.Duration
	cycleTimeout  time.Duration
	lateLogin     time.Duration
	journal       SessionJournal
	hc            *http.Client
}

// Option adjusts a Client.
type Option func(*config)

// WithTimeout bounds each HTTP attempt (default 10s).
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithRetry sets the attempts per request (default 4) and the first backoff (default 100ms), which
// doubles per attempt up to 2s.
func WithRetry(attempts int, backoff time.Duration) Option {
	return func(c *config) { c.attempts, c.backoff = attempts, backoff }
}

// WithLogoutTimeout bounds the logout in Close, which runs even when the caller's context is done
// (default 5s).
func WithLogoutTimeout(d time.Duration) Option { return func(c *config) { c.logoutTimeout = d } }

// WithPowerPoll sets how often and how long Power(cycle) polls for Off on BMCs without PowerCycle
// (default every 500ms for up to 60s).
func WithPowerPoll(interval, timeout time.Duration) Option {
	return func(c *config) { c.pollInterval, c.cycleTimeout = interval, timeout }
}

// WithLateLoginWindow bounds how long the client keeps listening for the answer to a login that
// it already gave up on (default 2m): a session the BMC creates after the client's timeout is
// logged out as soon as its answer arrives, rather than left to occupy the BMC's small session
// table until it expires.
func WithLateLoginWindow(d time.Duration) Option { return func(c *config) { c.lateLogin = d } }

// WithSessionJournal reports every session the client opens and closes to j, so that sessions a
// crashed process left open can be logged out at the next start (see LogoutStale).
func WithSessionJournal(j SessionJournal) Option { return func(c *config) { c.journal = j } }

// WithHTTPClient replaces the HTTP client (its Timeout and TLS settings are then the caller's).
func WithHTTPClient(hc *http.Client) Option { return func(c *config) { c.hc = hc } }

type authMode int

const (
	authNone authMode = iota
	authSession
	authBasic
)

type creds struct {
	mode  authMode
	token string
}

// Client talks to one BMC. It logs in lazily on the first operation and must be closed. Methods are
// safe for concurrent use, though one operation at a time per BMC is what BMCs cope with best.
type Client struct {
	ep   bmc.Endpoint
	base *url.URL
	hc   *http.Client
	cfg  config

	mu         sync.Mutex // guards the fields below; held across login so two callers log in once
	auth       authMode
	token      string
	sessionURI string
	root       *serviceRoot
	systemPath string
	noContext  bool // the BMC refused Session.Context in a login body

	pending sync.WaitGroup // logins given up on whose answer is still awaited
}

// New returns a client for ep. Nothing is sent until the first operation.
func New(ep bmc.Endpoint, opts ...Option) *Client {
	cfg := config{
		timeout: 10 * time.Second, attempts: 4, backoff: 100 * time.Millisecond, maxBackoff: 2 * time.Second,
		logoutTimeout: 5 * time.Second, pollInterval: 500 * time.Millisecond, cycleTimeout: 60 * time.Second,
		lateLogin: 2 * time.Minute,
	}
	for _, o := range opts {
		o(&cfg)
	}
	cfg.attempts = max(cfg.attempts, 1)
	hc := cfg.hc
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		// BMCs ship self-signed certificates; skipping verification is the operator's explicit choice.
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: ep.Insecure} //nolint:gosec
		tr.MaxIdleConnsPerHost = 2
		hc = &http.Client{Transport: tr, Timeout: cfg.timeout}
	}
	scheme := strings.ToLower(ep.Scheme)
	if scheme == "" {
		scheme = "https"
	}
	host := ep.Address
	if ep.Port != 0 {
		host = net.JoinHostPort(ep.Address, strconv.Itoa(ep.Port))
	} else if _, _, err := net.SplitHostPort(ep.Address); err != nil {
		port := "443"
		if scheme == "http" {
			port = "80"
		}
		host = net.JoinHostPort(strings.Trim(ep.Address, "[]"), port)
	}
	return &Client{ep: ep, base: &url.URL{Scheme: scheme, Host: host}, hc: hc, cfg: cfg}
}

// WithSession runs fn with a client for ep and always closes it, also when fn fails or ctx is done.
func WithSession(ctx context.Context, ep bmc.Endpoint, fn func(*Client) error, opts ...Option) error {
	c := New(ep, opts...)
	err := fn(c)
	return errors.Join(err, c.Close(ctx))
}

// Close logs out. It uses a fresh, bounded context so that a cancelled or expired ctx still frees
// the BMC session, and it is idempotent. The client may be used again afterwards (it logs in anew).
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	uri, token, mode := c.sessionURI, c.token, c.auth
	c.auth, c.token, c.sessionURI = authNone, "", ""
	c.mu.Unlock()
	defer c.hc.CloseIdleConnections()
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.logoutTimeout)
	defer cancel()
	// A login given up on may still be answered; wait for it (bounded) so that its session is
	// gone when Close returns. If the BMC stays silent the waiter logs it out later on its own.
	waited := make(chan struct{})
	go func() { c.pending.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-lctx.Done():
	}
	if mode != authSession || uri == "" {
		return nil
	}
	err := c.logout(lctx, uri, creds{mode: authSession, token: token})
	if err != nil {
		return fmt.Errorf("redfish: logout from %s: %w", c.base.Host, err)
	}
	return nil
}

// logout deletes the session at uri and tells the journal. A session that is already gone
// (expired, or the BMC restarted) is not an error.
func (c *Client) logout(ctx context.Context, uri string, cr creds) error {
	_, err := c.send(ctx, http.MethodDelete, uri, nil, nil, cr, false)
	switch statusOf(err) {
	case http.StatusNotFound, http.StatusUnauthorized:
		err = nil
	}
	if err == nil {
		c.journalClosed(ctx, uri)
	}
	return err
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// idempotent says whether repeating a request cannot add an effect. POST (actions, session
// creation) is the exception: a POST whose answer was lost may have been carried out, so it is
// sent once and the caller reads the BMC's state to decide (see resetOnce, login).
func idempotent(method string) bool {
	return method != http.MethodPost
}

// ambiguous says whether a failed request may nevertheless have been carried out: no answer
// (dropped, timed out) or a 5xx, which some BMCs send after acting.
func ambiguous(err error) bool {
	return errors.Is(err, ErrUnreachable) || statusOf(err) >= 500
}

// send performs one logical request. Idempotent requests are retried on 5xx answers and
// connection errors with exponential backoff; POST is sent once (see idempotent). The detach
// argument is kept for callers that must not abandon a request the BMC may already be serving:
// each attempt then runs unaffected by ctx cancellation (bounded by the HTTP timeout).
func (c *Client) send(ctx context.Context, method, path string, body any, hdr map[string]string, cr creds, detach bool) (*response, error) {
	return c.sendWith(ctx, c.hc, method, path, body, hdr, cr, detach)
}

func (c *Client) sendWith(ctx context.Context, hc *http.Client, method, path string, body any, hdr map[string]string, cr creds, detach bool) (*response, error) {
	var (
		payload []byte
		err     error
	)
	if body != nil {
		if payload, err = json.Marshal(body); err != nil {
			return nil, fmt.Errorf("redfish: %s %s: encode body: %w", method, path, err)
		}
	}
	ref, perr := url.Parse(path)
	if perr != nil {
		return nil, fmt.Errorf("redfish: %s %q: bad path: %w", method, path, perr)
	}
	// Resolving keeps the BMC's host even if a Location or @odata.id carries an absolute URL.
	u := c.base.ResolveReference(&url.URL{Path: ref.Path, RawQuery: ref.RawQuery})
	reqPath := u.Path
	attempts := c.cfg.attempts
	if !idempotent(method) {
		attempts = 1
	}
	backoff := c.cfg.backoff
	var lastErr error
	for attempt := 0; attempt < attempts; attempt++ {
		if attempt > 0 {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("redfish: %s %s: %w (last error: %w)", method, reqPath, ctx.Err(), lastErr)
			case <-t.C:
			}
			backoff = min(2*backoff, c.cfg.maxBackoff)
		}
		rctx := ctx
		if detach {
			rctx = context.WithoutCancel(ctx)
		}
		resp, retry, err := c.attempt(rctx, hc, method, u, reqPath, payload, hdr, cr)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil && !detach && errors.Is(err, ErrUnreachable) {
			return nil, fmt.Errorf("redfish: %s %s: %w", method, reqPath, ctx.Err())
		}
		if !retry {
			return nil, err
		}
		lastErr = err
	}
	if attempts > 1 {
		return nil, fmt.Errorf("%w (gave up after %d attempts)", lastErr, attempts)
	}
	return nil, lastErr
}

// attempt sends one HTTP request. retry says whether the failure is of a kind worth another try.
func (c *Client) attempt(ctx context.Context, hc *http.Client, method string, u *url.URL, reqPath string, payload []byte, hdr map[string]string, cr creds) (*response, bool, error) {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, false, fmt.Errorf("redfish: %s %s: %w", method, reqPath, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("OData-Version", "4.0")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	switch cr.mode {
	case authSession:
		req.Header.Set("X-Auth-Token", cr.token)
	case authBasic:
		req.SetBasicAuth(c.ep.Username, c.ep.Password)
	}
	resp, err := hc.Do(req)
	if err != nil {
		var certErr *tls.CertificateVerificationError
		if errors.As(err, &certErr) {
			// An untrusted certificate will not become trusted by asking again.
			return nil, false, fmt.Errorf("redfish: %s %s: %w (set the endpoint insecure to accept a self-signed BMC certificate)", method, reqPath, err)
		}
		return nil, true, fmt.Errorf("redfish: %s %s: %w: %w", method, reqPath, ErrUnreachable, err)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	_ = resp.Body.Close()
	if err != nil {
		return nil, true, fmt.Errorf("redfish: %s %s: read body: %w: %w", method, reqPath, ErrUnreachable, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return &response{status: resp.StatusCode, header: resp.Header, body: b}, false, nil
	}
	he := &HTTPError{Method: method, Path: reqPath, StatusCode: resp.StatusCode, Message: errorMessage(b)}
	return nil, resp.StatusCode >= 500, he
}

// errorMessage extracts the human part of a Redfish error body.
func errorMessage(b []byte) string {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Info    []struct {
				Message string `json:"Message"`
			} `json:"@Message.ExtendedInfo"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil {
		return ""
	}
	msgs := []string{}
	if e.Error.Message != "" {
		msgs = append(msgs, e.Error.Message)
	}
	for _, i := range e.Error.Info {
		if i.Message != "" && i.Message != e.Error.Message {
			msgs = append(msgs, i.Message)
		}
	}
	return strings.Join(msgs, "; ")
}

type odataID struct {
	ID string `json:"@odata.id"`
}

type collection struct {
	Members []odataID `json:"Members"`
}

type serviceRoot struct {
	Systems        odataID `json:"Systems"`
	Managers       odataID `json:"Managers"`
	Chassis        odataID `json:"Chassis"`
	SessionService odataID `json:"SessionService"`
	Links          struct {
		Sessions odataID `json:"Sessions"`
	} `json:"Links"`
}

// serviceRootLocked fetches the unauthenticated service root once; c.mu must be held.
func (c *Client) serviceRootLocked(ctx context.Context) (*serviceRoot, error) {
	if c.root != nil {
		return c.root, nil
	}
	resp, err := c.send(ctx, http.MethodGet, "/redfish/v1/", nil, nil, creds{mode: c.auth, token: c.token}, false)
	if err != nil {
		return nil, err
	}
	var r serviceRoot
	if err := json.Unmarshal(resp.body, &r); err != nil {
		return nil, fmt.Errorf("redfish: GET /redfish/v1/: decode: %w", err)
	}
	c.root = &r
	return &r, nil
}

func (c *Client) serviceRoot(ctx context.Context) (*serviceRoot, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.serviceRootLocked(ctx)
}

// login makes sure the client holds credentials. It prefers a session (one login instead of
// credentials on every request, and a BMC-visible logout) and falls back to Basic auth when the
// session service is missing.
//
// Creating a session is not idempotent: a login whose answer is lost may have created a session
// whose token only that answer carried. So the login is never re-sent blindly. Each login carries
// a unique Session.Context; after a lost answer (dropped connection, 5xx) the client lists the
// BMC's sessions with Basic auth, deletes the one carrying its Context, and only then tries again.
// A login that times out is not repeated at all: its answer is still awaited in the background
// (WithLateLoginWindow) and the session it carries is logged out when it arrives.
func (c *Client) login(ctx context.Context) (creds, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.auth != authNone {
		return creds{mode: c.auth, token: c.token}, nil
	}
	if err := ctx.Err(); err != nil {
		return creds{}, fmt.Errorf("redfish: login to %s: %w", c.base.Host, err)
	}
	sessPath := "/redfish/v1/SessionService/Sessions"
	if root, err := c.serviceRootLocked(ctx); err == nil && root.Links.Sessions.ID != "" {
		sessPath = root.Links.Sessions.ID
	} else if err != nil && statusOf(err) == 0 {
		return creds{}, err // unreachable BMC: no point trying to log in
	}
	backoff := c.cfg.backoff
	for attempt := 1; ; attempt++ {
		nonce := "prybar-" + randomHex(8)
		body := map[string]string{"UserName": c.ep.Username, "Password": c.ep.Password}
		if !c.noContext {
			body["Context"] = nonce
		}
		resp, err := c.postSession(ctx, sessPath, body)
		switch st := statusOf(err); {
		case err == nil:
			return c.adoptSession(ctx, resp)
		case st == http.StatusBadRequest && !c.noContext:
			// Sessions older than schema 1.5 have no Context; such a BMC may refuse the property.
			// A 400 means nothing was created, so asking again without it is safe.
			c.noContext = true
			attempt--
			continue
		case st == http.StatusNotFound || st == http.StatusMethodNotAllowed || st == http.StatusNotImplemented:
			c.auth = authBasic
			return creds{mode: authBasic}, nil
		case st == http.StatusUnauthorized || st == http.StatusForbidden:
			return creds{}, fmt.Errorf("redfish: login to %s as %q refused (check credentials): %w", c.base.Host, c.ep.Username, err)
		case errors.Is(err, errLoginPending):
			return creds{}, fmt.Errorf("redfish: login to %s: %w", c.base.Host, err)
		case !ambiguous(err):
			return creds{}, fmt.Errorf("redfish: login to %s: %w", c.base.Host, err)
		}
		// The answer was lost or was a 5xx: a session may exist that nobody holds the token of.
		if c.noContext {
			return creds{}, fmt.Errorf("redfish: login to %s: %w: the BMC cannot tag sessions, so an orphaned one cannot be found: %w", c.base.Host, ErrOutcomeUnknown, err)
		}
		if cerr := c.deleteSessionsTagged(ctx, sessPath, nonce); cerr != nil {
			return creds{}, fmt.Errorf("redfish: login to %s: %w: checking for an orphaned session failed (%v): %w", c.base.Host, ErrOutcomeUnknown, cerr, err)
		}
		if statusOf(err) == http.StatusServiceUnavailable {
			return creds{}, fmt.Errorf("%w: %w", ErrSessionLimit, err)
		}
		if attempt >= c.cfg.attempts {
			return creds{}, fmt.Errorf("redfish: login to %s: %w (gave up after %d attempts)", c.base.Host, err, attempt)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return creds{}, fmt.Errorf("redfish: login to %s: %w (last error: %w)", c.base.Host, ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(2*backoff, c.cfg.maxBackoff)
	}
}

// adoptSession takes the credentials out of a successful login answer; c.mu is held.
func (c *Client) adoptSession(ctx context.Context, resp *response) (creds, error) {
	token := resp.header.Get("X-Auth-Token")
	if token == "" {
		// A session without a token is useless; Basic still works on such BMCs.
		c.auth = authBasic
		return creds{mode: authBasic}, nil
	}
	loc := sessionLocation(resp)
	c.auth, c.token, c.sessionURI = authSession, token, loc
	c.journalOpened(ctx, loc, token)
	// The session exists now even if the caller gave up meanwhile; it is recorded above so Close
	// deletes it, and the caller learns about the cancellation.
	if err := ctx.Err(); err != nil {
		return creds{}, fmt.Errorf("redfish: login to %s: %w", c.base.Host, err)
	}
	return creds{mode: authSession, token: token}, nil
}

func sessionLocation(resp *response) string {
	loc := resp.header.Get("Location")
	if loc == "" {
		var s odataID
		_ = json.Unmarshal(resp.body, &s)
		loc = s.ID
	}
	if u, err := url.Parse(loc); err == nil && u.Path != "" {
		loc = u.Path
	}
	return loc
}

// errLoginPending marks a login the client stopped waiting for while the request is still out.
var errLoginPending = errors.New("no answer in time; the session it may create is logged out when the answer arrives")

// postSession sends one login. It waits for the answer up to the client timeout (or ctx); past
// that the request stays out, up to WithLateLoginWindow, and a session its late answer carries is
// deleted at once (and journalled as open when that deletion fails, for LogoutStale).
func (c *Client) postSession(ctx context.Context, path string, body any) (*response, error) {
	type result struct {
		resp *response
		err  error
	}
	var state atomic.Int32 // 0 waiting, 1 delivered, 2 abandoned
	ch := make(chan result, 1)
	late := *c.hc
	late.Timeout = 0 // bounded by lctx instead
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.lateLogin)
	c.pending.Add(1)
	go func() {
		defer c.pending.Done()
		defer cancel()
		resp, err := c.sendWith(lctx, &late, http.MethodPost, path, body, nil, creds{}, false)
		if state.CompareAndSwap(0, 1) {
			ch <- result{resp, err}
			return
		}
		if err == nil {
			c.discardLateSession(resp)
		}
	}()
	t := time.NewTimer(c.cfg.timeout)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.resp, r.err
	case <-t.C:
	case <-ctx.Done():
	}
	if !state.CompareAndSwap(0, 2) {
		r := <-ch // the answer won the race
		return r.resp, r.err
	}
	cause := ctx.Err()
	if cause == nil {
		cause = fmt.Errorf("%w after %s", ErrUnreachable, c.cfg.timeout)
	}
	return nil, fmt.Errorf("redfish: POST %s: %w: %w", path, errLoginPending, cause)
}

// discardLateSession logs out a session whose login the client had already given up on.
func (c *Client) discardLateSession(resp *response) {
	token := resp.header.Get("X-Auth-Token")
	uri := sessionLocation(resp)
	if token == "" || uri == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.logoutTimeout)
	defer cancel()
	_, err := c.send(ctx, http.MethodDelete, uri, nil, nil, creds{mode: authSession, token: token}, false)
	if err != nil && statusOf(err) != http.StatusNotFound {
		c.journalOpened(ctx, uri, token) // LogoutStale will try again
	}
}

// deleteSessionsTagged deletes, with Basic auth, the sessions whose Context is tag: the ones a
// login created whose answer was lost.
func (c *Client) deleteSessionsTagged(ctx context.Context, sessPath, tag string) error {
	basic := creds{mode: authBasic}
	resp, err := c.send(ctx, http.MethodGet, sessPath, nil, nil, basic, false)
	if err != nil {
		return err
	}
	var col collection
	if err := json.Unmarshal(resp.body, &col); err != nil {
		return fmt.Errorf("GET %s: decode: %w", sessPath, err)
	}
	for _, m := range col.Members {
		r, err := c.send(ctx, http.MethodGet, m.ID, nil, nil, basic, false)
		if statusOf(err) == http.StatusNotFound {
			continue
		}
		if err != nil {
			return err
		}
		var ss struct{ Context string }
		if json.Unmarshal(r.body, &ss) != nil || ss.Context != tag {
			continue
		}
		if _, err := c.send(ctx, http.MethodDelete, m.ID, nil, nil, basic, false); err != nil && statusOf(err) != http.StatusNotFound {
			return err
		}
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// call is an authenticated request. A 401 on a session means the BMC dropped it (timeout, restart):
// the client logs in once more and repeats the request.
func (c *Client) call(ctx context.Context, method, path string, body any, hdr map[string]string) (*response, error) {
	cr, err := c.login(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(ctx, method, path, body, hdr, cr, false)
	if statusOf(err) == http.StatusUnauthorized && cr.mode == authSession {
		c.forgetSession(ctx, cr.token)
		if cr, err = c.login(ctx); err != nil {
			return nil, err
		}
		resp, err = c.send(ctx, method, path, body, hdr, cr, false)
	}
	return resp, err
}

// forgetSession drops a session the BMC no longer knows, without trying to delete it.
func (c *Client) forgetSession(ctx context.Context, token string) {
	c.mu.Lock()
	uri := ""
	if c.token == token {
		uri = c.sessionURI
		c.auth, c.token, c.sessionURI = authNone, "", ""
	}
	c.mu.Unlock()
	if uri != "" {
		c.journalClosed(ctx, uri)
	}
}

// get decodes the resource at path into v and returns its ETag (header, else @odata.etag).
func (c *Client) get(ctx context.Context, path string, v any) (string, error) {
	resp, err := c.call(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return "", err
	}
	if err := json.Unmarshal(resp.body, v); err != nil {
		return "", fmt.Errorf("redfish: GET %s: decode: %w", path, err)
	}
	etag := resp.header.Get("ETag")
	if etag == "" {
		var e struct {
			ETag string `json:"@odata.etag"`
		}
		_ = json.Unmarshal(resp.body, &e)
		etag = e.ETag
	}
	return etag, nil
}

func (c *Client) members(ctx context.Context, path string) ([]string, error) {
	var col collection
	if _, err := c.get(ctx, path, &col); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(col.Members))
	for _, m := range col.Members {
		if m.ID != "" {
			out = append(out, m.ID)
		}
	}
	return out, nil
}

// system finds the ComputerSystem to act on: the one named by ep.SystemID (its Id or its
// path), or the only one. Guessing among several would power-cycle the wrong machine, so that is
// an error naming the choices.
func (c *Client) system(ctx context.Context) (string, error) {
	c.mu.Lock()
	p := c.systemPath
	c.mu.Unlock()
	if p != "" {
		return p, nil
	}
	ms, col, err := c.systemMembers(ctx)
	if err != nil {
		return "", err
	}
	switch want := strings.TrimSuffix(c.ep.SystemID, "/"); {
	case want != "":
		for _, m := range ms {
			if strings.TrimSuffix(m, "/") == want || lastSegment(m) == want {
				p = m
			}
		}
		if p == "" {
			return "", fmt.Errorf("redfish: system %q not found on %s (systems: %s)", c.ep.SystemID, c.base.Host, c.systemChoices(ctx, ms))
		}
	case len(ms) == 1:
		p = ms[0]
	case len(ms) == 0:
		return "", fmt.Errorf("redfish: %s lists no systems in %s", c.base.Host, col)
	default:
		return "", fmt.Errorf("redfish: %s manages %d systems: %s; set the BMC's systemID to the one this machine is", c.base.Host, len(ms), c.systemChoices(ctx, ms))
	}
	c.mu.Lock()
	c.systemPath = p
	c.mu.Unlock()
	return p, nil
}

func lastSegment(p string) string {
	p = strings.TrimSuffix(p, "/")
	return p[strings.LastIndex(p, "/")+1:]
}
