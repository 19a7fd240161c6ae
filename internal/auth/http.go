package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prybar/prybar/internal/access"
	"github.com/prybar/prybar/internal/events"
)

// CookieName is the session cookie.
const CookieName = "prybar_session"

// CSRFHeader carries a session's CSRF token on cookie-authenticated POSTs.
const CSRFHeader = "X-CSRF-Token"

// HTTPConfig configures the HTTP side.
type HTTPConfig struct {
	// Secure marks the session cookie Secure (the server speaks TLS).
	Secure bool
	// Limiter rate-limits /graphql per identity (nil: no limit).
	Limiter *Limiter
	// LoginLimiter rate-limits /auth/login per client address (nil: no limit): password
	// guessing gets a much smaller budget than API use.
	LoginLimiter *Limiter
	// CORSOrigins are origins allowed to call /graphql from a browser with a token (CORS is off
	// when empty). Cookies are never sent cross-origin (SameSite=Lax), so CORS only concerns
	// Bearer tokens.
	CORSOrigins []string
}

type sessionJSON struct {
	User      string      `json:"user"`
	Role      access.Role `json:"role"`
	CSRFToken string      `json:"csrfToken"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func jsonError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// graphQLError answers like the GraphQL endpoint does, with extensions.code.
func graphQLError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"errors": []any{map[string]any{"message": msg, "extensions": map[string]any{"code": code}}}})
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (s *Service) limited(w http.ResponseWriter, l *Limiter, key string) bool {
	ok, wait := l.Allow(key)
	if ok {
		return false
	}
	w.Header().Set("Retry-After", fmt.Sprint(int(math.Ceil(wait.Seconds()))))
	graphQLError(w, http.StatusTooManyRequests, "RATE_LIMITED", fmt.Sprintf("too many requests; retry in %s", wait.Round(time.Millisecond)))
	return true
}

// Routes returns the handler of /auth/login, /auth/logout and /auth/session.
func (s *Service) Routes(cfg HTTPConfig) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /auth/login", func(w http.ResponseWriter, r *http.Request) {
		// Rate limited per client address: password guessing is what this endpoint invites.
		if s.limited(w, cfg.LoginLimiter, "login:"+clientAddr(r)) {
			return
		}
		// JSON only: a form on another site cannot send it without a CORS preflight (login CSRF).
		if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			jsonError(w, http.StatusUnsupportedMediaType, "send the credentials as application/json")
			return
		}
		var in struct{ Name, Password string }
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&in); err != nil {
			jsonError(w, http.StatusBadRequest, "body must be JSON {\"name\":…,\"password\":…}")
			return
		}
		secret, id, err := s.Login(r.Context(), in.Name, in.Password)
		if errors.Is(err, ErrUnauthenticated) {
			jsonError(w, http.StatusUnauthorized, "wrong name or password")
			return
		} else if err != nil {
			s.log.Error("sign-in failed", "err", err)
			jsonError(w, http.StatusInternalServerError, "internal error")
			return
		}
		http.SetCookie(w, &http.Cookie{Name: CookieName, Value: secret, Path: "/", HttpOnly: true, Secure: cfg.Secure,
			SameSite: http.SameSiteLaxMode, MaxAge: int(SessionTTL.Seconds())})
		writeJSON(w, http.StatusOK, sessionJSON{User: id.Name, Role: id.Role, CSRFToken: CSRFToken(secret)})
	})
	mux.HandleFunc("POST /auth/logout", func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(CookieName)
		if err != nil || c.Value == "" {
			jsonError(w, http.StatusUnauthorized, "not signed in")
			return
		}
		if !checkCSRF(c.Value, r.Header.Get(CSRFHeader)) {
			jsonError(w, http.StatusForbidden, "missing or wrong "+CSRFHeader+" header")
			return
		}
		if err := s.Logout(r.Context(), c.Value); err != nil {
			s.log.Error("sign-out failed", "err", err)
		}
		http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", HttpOnly: true, Secure: cfg.Secure,
			SameSite: http.SameSiteLaxMode, MaxAge: -1})
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /auth/session", func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(CookieName)
		if err != nil {
			jsonError(w, http.StatusUnauthorized, "not signed in")
			return
		}
		id, err := s.AuthenticateSession(r.Context(), c.Value)
		if err != nil {
			jsonError(w, http.StatusUnauthorized, "not signed in")
			return
		}
		writeJSON(w, http.StatusOK, sessionJSON{User: id.Name, Role: id.Role, CSRFToken: CSRFToken(c.Value)})
	})
	return mux
}

// Middleware authenticates requests to the API. A Bearer token or a session cookie puts the
// identity in the context (access.From) and names the actor of every write; a cookie-
// authenticated POST must carry the session's CSRF token. Anonymous requests pass through: the
// GraphQL layer refuses every field to them (and WebSockets authenticate in connection_init).
// Each identity (or anonymous client address) is rate limited.
func (s *Service) Middleware(cfg HTTPConfig, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cors(cfg, w, r) {
			return
		}
		ctx := r.Context()
		var id *access.Identity
		if h := r.Header.Get("Authorization"); h != "" {
			tok, ok := strings.CutPrefix(h, "Bearer ")
			if !ok {
				graphQLError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "Authorization must be \"Bearer <token>\"")
				return
			}
			var err error
			if id, err = s.AuthenticateToken(ctx, strings.TrimSpace(tok)); err != nil {
				s.unauthenticated(w, err)
				return
			}
		} else if c, err := r.Cookie(CookieName); err == nil && c.Value != "" {
			if sid, err := s.AuthenticateSession(ctx, c.Value); err == nil {
				// Cookies ride along with requests other sites make; the CSRF token cannot.
				if r.Method == http.MethodPost && !checkCSRF(c.Value, r.Header.Get(CSRFHeader)) {
					graphQLError(w, http.StatusForbidden, "FORBIDDEN", "a cookie-authenticated POST needs the "+CSRFHeader+" header")
					return
				}
				if r.Method != http.MethodPost && !isUpgrade(r) {
					// GET queries with a cookie could be triggered cross-site; they are not needed.
					sid = nil
				}
				id = sid
			}
			if id != nil {
				ctx = withCookieSecret(ctx, c.Value)
			}
		}
		key := "ip:" + clientAddr(r)
		if id != nil {
			key = id.Actor()
			ctx = events.WithActor(access.With(ctx, id), id.Actor())
		}
		if !isUpgrade(r) && s.limited(w, cfg.Limiter, key) {
			return
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func (s *Service) unauthenticated(w http.ResponseWriter, err error) {
	if !errors.Is(err, ErrUnauthenticated) {
		s.log.Error("authentication failed", "err", err)
		graphQLError(w, http.StatusInternalServerError, "INTERNAL", "internal error")
		return
	}
	graphQLError(w, http.StatusUnauthorized, "UNAUTHENTICATED", ErrUnauthenticated.Error())
}

func isUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// cors answers preflights and sets CORS headers for configured origins; it reports whether the
// request was fully answered.
func (s *Service) cors(cfg HTTPConfig, w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || len(cfg.CORSOrigins) == 0 {
		return false
	}
	allowed := false
	for _, o := range cfg.CORSOrigins {
		if strings.EqualFold(o, origin) {
			allowed = true
		}
	}
	if !allowed {
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "POST, GET, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	return false
}

type cookieKey struct{}

func withCookieSecret(ctx context.Context, secret string) context.Context {
	return context.WithValue(ctx, cookieKey{}, secret)
}

// WebsocketInit authenticates a graphql-transport-ws connection from its connection_init payload:
// {"authorization": "Bearer <token>"}, or for browsers the session cookie of the upgrade with
// {"csrfToken": "…"}. It returns the context for the connection (cancelled when the credential is
// revoked, which ends its subscriptions) or an error with the close code (4401, 4403) set on ctx.
func (s *Service) WebsocketInit(ctx context.Context, payload map[string]any, closeWith func(ctx context.Context, code int) context.Context) (context.Context, error) {
	var id *access.Identity
	auth, _ := payload["authorization"].(string)
	if auth == "" {
		auth, _ = payload["Authorization"].(string)
	}
	if auth != "" {
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok {
			return closeWith(ctx, 4401), errors.New("authorization must be \"Bearer <token>\"")
		}
		var err error
		if id, err = s.AuthenticateToken(ctx, strings.TrimSpace(tok)); err != nil {
			return closeWith(ctx, 4401), ErrUnauthenticated
		}
	} else if secret, ok := ctx.Value(cookieKey{}).(string); ok {
		csrf, _ := payload["csrfToken"].(string)
		if !checkCSRF(secret, csrf) {
			return closeWith(ctx, 4403), errors.New("a cookie-authenticated connection needs csrfToken in connection_init")
		}
		id = access.From(ctx)
	}
	if id == nil {
		return closeWith(ctx, 4401), errors.New("authentication required: send {\"authorization\": \"Bearer <token>\"} in connection_init")
	}
	ctx = events.WithActor(access.With(ctx, id), id.Actor())
	ctx, cancel := context.WithCancel(ctx)
	go s.Watch(ctx, id, 15*time.Second, func() {
		s.log.Info("credential revoked: closing its WebSocket", "identity", id.Actor())
		cancel()
	})
	return ctx, nil
}
