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
	"testing"

	"github.com/prybar/prybar/graph"
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
}

// Serve starts the HTTP server over st.
func Serve(t testing.TB, st *store.Store) *Server { return ServeWith(t, st, graph.Options{}) }

// ServeWith starts the HTTP server over st with the annealer and operations wired in.
func ServeWith(t testing.TB, st *store.Store, opts graph.Options) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	h := httpserver.Handler(httpserver.Config{Store: st, Log: Quiet(), API: opts})
	srv := httptest.NewUnstartedServer(h)
	srv.Config.BaseContext = nil
	srv.Start()
	t.Cleanup(func() {
		cancel()
		srv.CloseClientConnections()
		srv.Close()
	})
	_ = ctx
	return &Server{Server: srv, Store: st}
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
	return (&Client{URL: s.URL}).Do(query, vars)
}

// Client is a GraphQL-over-HTTP client for a server at URL (without /graphql).
type Client struct{ URL string }

// Decode unmarshals the response data into out.
func (r *Response) Decode(out any) error { return json.Unmarshal(r.Data, out) }

// Do posts a GraphQL request without judging the answer.
func (c *Client) Do(query string, vars map[string]any) (*Response, error) {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	res, err := http.Post(c.URL+"/graphql", "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	var r Response
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("status %d, body %q: %w", res.StatusCode, data, err)
	}
	return &r, nil
}
