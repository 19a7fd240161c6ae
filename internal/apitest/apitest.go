// Package apitest is the harness for API tests and benchmarks: it opens real databases (a SQLite
// file, a throwaway PostgreSQL database), serves the real HTTP handler, and speaks GraphQL over
// HTTP and over WebSocket (graphql-transport-ws) like an external client would.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prybar/prybar/graph"
	"github.com/prybar/prybar/internal/access"
	"github.com/prybar/prybar/internal/auth"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/internal/httpserver"
	"github.com/prybar/prybar/internal/pgtest"
	"github.com/prybar/prybar/internal/store"
)

// Backend names a database kind.
type Backend string

// The backends every API test runs on.
const (
	SQLite   Backend = "sqlite"
	Postgres Backend = "postgres"
)

// DSN returns a fresh, empty database of kind b (skipping the test when PostgreSQL is unavailable).
func DSN(t testing.TB, b Backend) string {
	if b == Postgres {
		return pgtest.New(t)
	}
	return filepath.Join(t.TempDir(), "prybar.db")
}

// Open opens (and migrates) dsn, closing it at cleanup. For PostgreSQL it also starts the event
// listener, as `prybar serve` does.
func Open(t testing.TB, dsn string) *store.Store {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("open %s: %v", dsn, err)
	}
	if st.Dialect == "postgres" {
		go events.Listen(ctx, st.DSN, st.Hub, Quiet())
	}
	t.Cleanup(func() {
		cancel()
		st.Close()
	})
	return st
}

// ForEachDB runs fn as a subtest on SQLite and on PostgreSQL.
func ForEachDB(t *testing.T, fn func(t *testing.T, b Backend)) {
	for _, b := range []Backend{SQLite, Postgres} {
		t.Run(string(b), func(t *testing.T) { fn(t, b) })
	}
}

// Quiet is a logger that drops everything below warnings.
func Quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Server is the real HTTP handler over st on a loopback port.
type Server struct {
	*httptest.Server
	Store *store.Store
	// Auth is the server's auth service (users, tokens).
	Auth *auth.Service
	// Token is an ADMIN API token ("apitest-admin") that Do, Query and Subscribe send, so tests
	// of the API's behaviour need not each sign in; access-control tests use their own.
	Token string
}

// tokens maps a test server's URL to its admin token, for the URL-based helpers (Client,
// Subscribe) that tests call with srv.URL.
var tokens sync.Map

// RegisterToken makes token the default credential of the URL-based helpers for the server at
// baseURL (e.g. a `prybar serve` child process).
func RegisterToken(baseURL, token string) { tokens.Store(baseURL, token) }

// TokenFor returns the admin token of the test server at baseURL ("" if none).
func TokenFor(baseURL string) string {
	t, _ := tokens.Load(baseURL)
	s, _ := t.(string)
	return s
}

// Serve starts the HTTP server over st.
func Serve(t testing.TB, st *store.Store) *Server { return ServeWith(t, st, graph.Options{}) }

// ServeWith starts the HTTP server over st with the annealer and operations wired in.
func ServeWith(t testing.TB, st *store.Store, opts graph.Options) *Server {
	return ServeAuth(t, st, opts, httpserver.AuthConfig{})
}

// ServeAuth starts the HTTP server over st with access-control settings (rate limits, origins).
func ServeAuth(t testing.TB, st *store.Store, opts graph.Options, ac httpserver.AuthConfig) *Server {
	t.Helper()
	svc := ac.Service
	if svc == nil {
		svc = auth.New(st, Quiet())
		ac.Service = svc
	}
	// Untracked: the harness's token is not part of what a test's change feed records.
	secret, _, err := svc.CreateToken(events.Untracked(context.Background()), auth.TokenOptions{Name: "apitest-admin", Role: access.Admin})
	if err != nil && !strings.Contains(err.Error(), "exists") {
		t.Fatalf("apitest admin token: %v", err)
	}
	h := httpserver.Handler(httpserver.Config{Store: st, Log: Quiet(), API: opts, Auth: ac})
	srv := httptest.NewUnstartedServer(h)
	srv.Config.BaseContext = nil
	srv.Start()
	tokens.Store(srv.URL, secret)
	t.Cleanup(func() {
		tokens.Delete(srv.URL)
		srv.CloseClientConnections()
		srv.Close()
	})
	return &Server{Server: srv, Store: st, Auth: svc, Token: secret}
}

// Response is a GraphQL response.
type Response struct {
	Data   json.RawMessage `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Path       []any          `json:"path"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
}

// Query posts a GraphQL request and decodes data into out (if non-nil). Top-level GraphQL errors
// fail the test unless allowErrors.
func (s *Server) Query(t testing.TB, query string, vars map[string]any, out any) *Response {
	t.Helper()
	resp, err := s.Do(query, vars)
	if err != nil {
		t.Fatalf("graphql: %v", err)
	}
	if len(resp.Errors) > 0 {
		t.Fatalf("graphql errors: %+v\nquery: %s", resp.Errors, query)
	}
	if out != nil {
		if err := json.Unmarshal(resp.Data, out); err != nil {
			t.Fatalf("decode %s: %v", resp.Data, err)
		}
	}
	return resp
}

// Do posts a GraphQL request without judging the answer.
func (s *Server) Do(query string, vars map[string]any) (*Response, error) {
	return (&Client{URL: s.URL, Token: s.Token}).Do(query, vars)
}

// Client is a GraphQL-over-HTTP client for a server at URL (without /graphql).
type Client struct {
	URL string
	// Token is sent as Authorization: Bearer; empty: the test server's admin token, if URL is
	// one (TokenFor); use Anonymous for a request without credentials.
	Token string
	// Anonymous sends no credentials at all.
	Anonymous bool
	// Header is added to every request (e.g. a session cookie and X-CSRF-Token, see Login).
	Header http.Header
}

// Login signs in at baseURL's /auth/login and returns a client using the session cookie and
// its CSRF token, as the web console does.
func Login(baseURL, name, password string) (*Client, error) {
	body, _ := json.Marshal(map[string]string{"name": name, "password": password})
	res, err := http.Post(baseURL+"/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var out struct {
		User, Role, CSRFToken string
	}
	data, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("sign-in as %s: %s %s", name, res.Status, data)
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, err
	}
	h := http.Header{}
	for _, c := range res.Cookies() {
		if c.Name == auth.CookieName {
			h.Add("Cookie", c.Name+"="+c.Value)
		}
	}
	if h.Get("Cookie") == "" {
		return nil, fmt.Errorf("sign-in as %s set no %s cookie", name, auth.CookieName)
	}
	h.Set(auth.CSRFHeader, out.CSRFToken)
	return &Client{URL: baseURL, Anonymous: true, Header: h}, nil
}

// Decode unmarshals the response data into out.
func (r *Response) Decode(out any) error { return json.Unmarshal(r.Data, out) }

// Do posts a GraphQL request without judging the answer.
func (c *Client) Do(query string, vars map[string]any) (*Response, error) {
	return c.DoContext(context.Background(), query, vars)
}

// DoContext is Do with a context (cancelling it disconnects, like a client that leaves).
func (c *Client) DoContext(ctx context.Context, query string, vars map[string]any) (*Response, error) {
	status, data, err := c.RawContext(ctx, query, vars)
	if err != nil {
		return nil, err
	}
	var r Response
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("status %d, body %q: %w", status, data, err)
	}
	return &r, nil
}

// RawContext posts a GraphQL request and returns the HTTP status and the whole body, unparsed:
// what a client has received once the last byte arrives (benchmarks time this, so that decoding
// the answer in the test client is not counted as the server's latency).
func (c *Client) RawContext(ctx context.Context, query string, vars map[string]any) (int, []byte, error) {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL+"/graphql", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range c.Header {
		req.Header[k] = vs
	}
	tok := c.Token
	if tok == "" {
		tok = TokenFor(c.URL)
	}
	if tok != "" && !c.Anonymous {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	return res.StatusCode, data, err
}
