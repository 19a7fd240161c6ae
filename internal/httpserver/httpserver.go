// Package httpserver assembles Prybar's HTTP surface — GraphQL, health probes, the embedded web
// console — with request ids, structured access logs and graceful shutdown.
package httpserver

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prybar/prybar/frontend"
	"github.com/prybar/prybar/graph"
	"github.com/prybar/prybar/internal/auth"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/internal/store"
)

// Config configures the server.
type Config struct {
	Listen string
	// Listener, when set, is served instead of listening on Listen: `prybar serve` binds its
	// address before it touches the database, so a busy port fails fast and changes nothing.
	Listener net.Listener
	Store    *store.Store
	Log      *slog.Logger
	// Ready reports whether the server should receive traffic (e.g. migrations done); nil = always.
	Ready func(ctx context.Context) error
	// API wires the annealer and operations into GraphQL (optional).
	API graph.Options
	// Boot, when set, serves network boot (provision/ipxe) under /boot/ on this listener too.
	Boot http.Handler
	// Auth configures sign-in and API authentication (docs/security.md).
	Auth AuthConfig
	// TLS, when set, makes Serve speak HTTPS (and session cookies Secure).
	TLS *tls.Config
	// Agent, when set, serves the discovery agent's protocol (provision/agentapi) under /agent/.
	// Machine-side: its own per-boot tokens, no user authentication.
	Agent http.Handler
}

// AuthConfig configures access control.
type AuthConfig struct {
	// Service is the auth service; nil: one over Store.
	Service *auth.Service
	// AllowedOrigins are browser origins besides the server's own allowed to open WebSockets.
	AllowedOrigins []string
	// CORSOrigins enables CORS for these origins (off when empty).
	CORSOrigins []string
	// RateLimit is requests per second per identity on /graphql and per client on sign-in,
	// with bursts of RateBurst; 0 disables it.
	RateLimit float64
	RateBurst int
}

type ctxKey struct{}

// RequestID returns the id of the request being served.
func RequestID(ctx context.Context) string {
	s, _ := ctx.Value(ctxKey{}).(string)
	return s
}

// Handler returns the full HTTP handler.
func Handler(cfg Config) http.Handler {
	mux := http.NewServeMux()
	svc := cfg.Auth.Service
	if svc == nil {
		svc = auth.New(cfg.Store, cfg.Log)
	}
	hcfg := auth.HTTPConfig{Secure: cfg.TLS != nil, Limiter: auth.NewLimiter(cfg.Auth.RateLimit, cfg.Auth.RateBurst), CORSOrigins: cfg.Auth.CORSOrigins}
	if cfg.Auth.RateLimit > 0 {
		// Sign-ins: one a second per client address, in bursts of 10.
		hcfg.LoginLimiter = auth.NewLimiter(1, 10)
	}
	api := cfg.API
	api.Auth, api.AllowedOrigins = svc, cfg.Auth.AllowedOrigins
	// /graphql is user-authenticated; /boot/*, the probes and the SPA's assets are not (the
	// machine-side endpoints check their own per-boot tokens).
	mux.Handle("/graphql", svc.Middleware(hcfg, graph.NewHandler(cfg.Store, cfg.Log, api)))
	mux.Handle("/auth/", svc.Routes(hcfg))
	if cfg.Boot != nil {
		mux.Handle("/boot/", cfg.Boot)
	}
	if cfg.Agent != nil {
		mux.Handle("/agent/", cfg.Agent)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		err := cfg.Store.DB.PingContext(ctx)
		if err == nil && cfg.Ready != nil {
			err = cfg.Ready(ctx)
		}
		if err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.Handle("/", frontend.Handler())
	return logRequests(cfg.Log, mux)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController (WebSocket hijacking, flushing) reach the real writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func logRequests(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if id == "" {
			var b [8]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		w.Header().Set("X-Request-Id", id)
		ctx := context.WithValue(r.Context(), ctxKey{}, id)
		// Authenticated requests replace this with their identity (internal/auth); what remains
		// attributed to the request is what anonymous requests may write (nothing in the API).
		ctx = events.WithActor(ctx, "api:"+id)
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		start := time.Now()
		next.ServeHTTP(sw, r.WithContext(ctx))
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			return
		}
		log.Info("http", "request_id", id, "method", r.Method, "path", r.URL.Path, "status", sw.status,
			"duration_ms", time.Since(start).Milliseconds(), "remote", r.RemoteAddr)
	})
}

// Serve listens on cfg.Listen and serves until ctx ends, then drains for up to 10 s. onListen
// receives the bound address (useful with port 0).
func Serve(ctx context.Context, cfg Config, onListen func(addr net.Addr)) error {
	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return err
		}
	}
	if cfg.TLS != nil {
		ln = tls.NewListener(ln, cfg.TLS)
	}
	srv := &http.Server{
		Handler:           Handler(cfg),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	if onListen != nil {
		onListen(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdown)
	if err2 := <-errc; err2 != nil && !errors.Is(err2, http.ErrServerClosed) {
		return err2
	}
	return err
}
