package graph_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/prybar/prybar/graph"
	"github.com/prybar/prybar/internal/access"
	"github.com/prybar/prybar/internal/apitest"
	"github.com/prybar/prybar/internal/auth"
	"github.com/prybar/prybar/internal/httpserver"
)

func init() {
	// Tests sign in often; the production work factor would only slow them down.
	auth.PasswordParams = auth.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}
}

// token creates a standalone API token with role on srv.
func token(t testing.TB, srv *apitest.Server, name string, role access.Role) string {
	t.Helper()
	s, _, err := srv.Auth.CreateToken(context.Background(), auth.TokenOptions{Name: name, Role: role})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func as(srv *apitest.Server, tok string) *apitest.Client {
	if tok == "" {
		return &apitest.Client{URL: srv.URL, Anonymous: true}
	}
	return &apitest.Client{URL: srv.URL, Token: tok}
}

func errCode(r *apitest.Response) string {
	for _, e := range r.Errors {
		if c, _ := e.Extensions["code"].(string); c != "" {
			return c
		}
	}
	return ""
}

// roleOf returns the @hasRole of a field definition, or "".
func roleOf(f *ast.FieldDefinition) access.Role {
	d := f.Directives.ForName("hasRole")
	if d == nil {
		return ""
	}
	if a := d.Arguments.ForName("role"); a != nil {
		return access.Role(a.Value.Raw)
	}
	return ""
}

// dummy builds a literal for a required argument of type t (only required fields of inputs).
func dummy(s *ast.Schema, t *ast.Type) string {
	if t.Elem != nil {
		return "[" + dummy(s, t.Elem) + "]"
	}
	def := s.Types[t.NamedType]
	switch def.Kind {
	case ast.Enum:
		return def.EnumValues[0].Name
	case ast.InputObject:
		var parts []string
		for _, f := range def.Fields {
			if f.Type.NonNull && f.DefaultValue == nil {
				parts = append(parts, f.Name+": "+dummy(s, f.Type))
			}
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	switch t.NamedType {
	case "ID":
		return `"1"`
	case "Int":
		return "1"
	case "Float":
		return "1.5"
	case "Boolean":
		return "false"
	case "Time":
		return `"2031-01-01T00:00:00Z"`
	case "Map", "Any":
		return "{}"
	}
	return `"walk-x"`
}

// call is a minimal operation calling root field f of op with dummy required arguments.
func call(s *ast.Schema, op string, f *ast.FieldDefinition) string {
	var args []string
	for _, a := range f.Arguments {
		if a.Type.NonNull && a.DefaultValue == nil {
			args = append(args, a.Name+": "+dummy(s, a.Type))
		}
	}
	q := f.Name
	if len(args) > 0 {
		q += "(" + strings.Join(args, ", ") + ")"
	}
	if k := s.Types[f.Type.Name()].Kind; k == ast.Object || k == ast.Interface || k == ast.Union {
		q += " { __typename }"
	}
	return op + " { " + q + " }"
}

// Issue 10: every query, mutation and subscription field carries an access decision, and the
// decisions hold at run time: anonymous → UNAUTHENTICATED with no data, too low a role →
// FORBIDDEN, enough → not refused. A field added without @hasRole fails here (and is refused
// to everyone by the server).
func TestRoleWalk(t *testing.T) {
	st := apitest.Open(t, apitest.DSN(t, apitest.SQLite))
	fleet(t, st, 2)
	srv := apitest.Serve(t, st)
	schema := graph.NewExecutableSchema(graph.Config{}).Schema()

	// The policy: reads are VIEWER except what touches credentials; writes at least OPERATOR;
	// users, tokens and BMC credentials ADMIN.
	want := func(op string, name string) access.Role {
		switch {
		case op == "query" && (name == "users" || name == "apiTokens"):
			return access.Admin
		case op == "query" && name == "bmcSystems":
			return access.Operator
		case op == "query" || op == "subscription":
			return access.Viewer
		case strings.Contains(name, "User") || strings.Contains(name, "APIToken") || strings.HasSuffix(name, "BMC"):
			return access.Admin
		}
		return access.Operator
	}
	ops := []struct {
		op  string
		def *ast.Definition
	}{{"query", schema.Query}, {"mutation", schema.Mutation}, {"subscription", schema.Subscription}}
	for _, o := range ops {
		for _, f := range o.def.Fields {
			if strings.HasPrefix(f.Name, "__") {
				continue
			}
			got := roleOf(f)
			if got == "" {
				t.Errorf("%s.%s has no @hasRole: decide who may use it", o.def.Name, f.Name)
			} else if w := want(o.op, f.Name); got != w {
				t.Errorf("%s.%s is @hasRole(%s); the policy says %s", o.def.Name, f.Name, got, w)
			}
		}
	}
	// Secret-bearing fields of other types carry one too.
	if roleOf(schema.Types["CreateAPITokenPayload"].Fields.ForName("secret")) != access.Admin {
		t.Errorf("CreateAPITokenPayload.secret must be @hasRole(role: ADMIN)")
	}

	idents := []struct {
		name string
		role access.Role
		tok  string
	}{
		{"anonymous", "", ""},
		{"viewer", access.Viewer, token(t, srv, "walk-viewer", access.Viewer)},
		{"operator", access.Operator, token(t, srv, "walk-operator", access.Operator)},
		{"admin", access.Admin, token(t, srv, "walk-admin", access.Admin)},
	}
	calls := 0
	for _, id := range idents {
		c := as(srv, id.tok)
		for _, o := range ops[:2] {
			for _, f := range o.def.Fields {
				if strings.HasPrefix(f.Name, "__") {
					continue
				}
				q := call(schema, o.op, f)
				resp, err := c.Do(q, nil)
				if err != nil {
					t.Fatalf("%s %s: %v", id.name, q, err)
				}
				calls++
				need := roleOf(f)
				code := errCode(resp)
				var data map[string]json.RawMessage
				_ = json.Unmarshal(resp.Data, &data)
				switch {
				case id.role == "":
					if code != graph.CodeUnauthenticated {
						t.Errorf("anonymous %s: got %q, want UNAUTHENTICATED (%+v)", q, code, resp.Errors)
					}
					if v := data[f.Name]; len(v) > 0 && string(v) != "null" {
						t.Errorf("anonymous %s returned data %s", q, v)
					}
				case !id.role.Includes(need):
					if code != graph.CodeForbidden {
						t.Errorf("%s %s: got %q, want FORBIDDEN (%+v)", id.name, q, code, resp.Errors)
					}
					if v := data[f.Name]; len(v) > 0 && string(v) != "null" {
						t.Errorf("%s %s returned data %s", id.name, q, v)
					}
				default:
					if code == graph.CodeForbidden || code == graph.CodeUnauthenticated {
						t.Errorf("%s %s: refused (%s) though it holds %s", id.name, q, code, need)
					}
				}
			}
		}
	}
	// Introspection needs an identity too.
	if r, _ := as(srv, "").Do(`{ __schema { queryType { name } } }`, nil); errCode(r) != graph.CodeUnauthenticated {
		t.Errorf("anonymous introspection: %+v %s", r.Errors, r.Data)
	}
	if r, _ := as(srv, idents[1].tok).Do(`{ __schema { queryType { name } } }`, nil); len(r.Errors) > 0 {
		t.Errorf("viewer introspection: %+v", r.Errors)
	}
	// Subscriptions: anonymous connections are closed with 4401; a viewer subscribes.
	for _, f := range schema.Subscription.Fields {
		q := call(schema, "subscription", f)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := apitest.SubscribeWith(ctx, srv.URL, "", q, nil); err == nil || websocket.CloseStatus(err) != 4401 && !strings.Contains(err.Error(), "4401") {
			t.Errorf("anonymous %s: %v, want close 4401", q, err)
		}
		sub, err := apitest.SubscribeWith(ctx, srv.URL, idents[1].tok, q, nil)
		if err != nil {
			t.Errorf("viewer %s: %v", q, err)
		} else {
			sub.Close()
		}
		cancel()
	}
	t.Logf("%d calls over %d query, %d mutation and %d subscription fields", calls,
		len(schema.Query.Fields), len(schema.Mutation.Fields), len(schema.Subscription.Fields))
}

// A GraphQL POST with the given headers; returns the status and body.
func post(t *testing.T, url string, h http.Header, body string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range h {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b strings.Builder
	_, _ = fmt.Fprint(&b, readAll(res))
	return res.StatusCode, b.String(), res.Header
}

func readAll(res *http.Response) string {
	buf := new(strings.Builder)
	b := make([]byte, 4096)
	for {
		n, err := res.Body.Read(b)
		buf.Write(b[:n])
		if err != nil {
			return buf.String()
		}
	}
}

// Token lifecycle: created (secret shown once), used (last-used recorded), expired, revoked →
// refused at the next request; a disabled user's tokens and sessions are refused.
func TestTokenLifecycle(t *testing.T) {
	st := apitest.Open(t, apitest.DSN(t, apitest.SQLite))
	srv := apitest.Serve(t, st)
	var created struct {
		CreateAPIToken struct {
			Token struct {
				ID, Name, Prefix string
				LastUsedAt       *string
			}
			Secret string
		}
	}
	srv.Query(t, `mutation { createAPIToken(input: {name: "ci-deploy", role: OPERATOR}) { token { id name prefix lastUsedAt } secret errors { message } } }`, nil, &created)
	secret := created.CreateAPIToken.Secret
	if !strings.HasPrefix(secret, auth.TokenPrefix) || !strings.HasPrefix(secret, created.CreateAPIToken.Token.Prefix) {
		t.Fatalf("secret %q / prefix %q", secret, created.CreateAPIToken.Token.Prefix)
	}
	// Shown once: listing tokens never includes it.
	list, _ := srv.Do(`{ apiTokens { id name prefix role owner lastUsedAt revokedAt } }`, nil)
	if strings.Contains(string(list.Data), secret) {
		t.Fatal("apiTokens shows the secret")
	}
	var who struct {
		Whoami struct{ Name, Kind, Role string }
	}
	r, _ := as(srv, secret).Do(`{ whoami { name kind role } }`, nil)
	if err := r.Decode(&who); err != nil || who.Whoami.Name != "ci-deploy" || who.Whoami.Kind != "token" || who.Whoami.Role != "OPERATOR" {
		t.Fatalf("whoami: %+v %s %v", r.Errors, r.Data, err)
	}
	var toks struct {
		APITokens []struct{ Name, LastUsedAt string }
	}
	srv.Query(t, `{ apiTokens { name lastUsedAt } }`, nil, &toks)
	for _, tk := range toks.APITokens {
		if tk.Name == "ci-deploy" && tk.LastUsedAt == "" {
			t.Error("last-used time not recorded")
		}
	}
	// Revoked: refused at the very next request.
	srv.Query(t, `mutation($id: ID!) { revokeAPIToken(id: $id) { token { revokedAt } errors { message } } }`, map[string]any{"id": created.CreateAPIToken.Token.ID}, nil)
	code, body, _ := post(t, srv.URL+"/graphql", http.Header{"Authorization": {"Bearer " + secret}}, `{"query":"{ whoami { name } }"}`)
	if code != http.StatusUnauthorized || !strings.Contains(body, "UNAUTHENTICATED") {
		t.Errorf("revoked token: %d %s", code, body)
	}
	// Expired.
	exp := time.Now().Add(1500 * time.Millisecond)
	short, _, err := srv.Auth.CreateToken(context.Background(), auth.TokenOptions{Name: "short", Role: access.Viewer, ExpiresAt: &exp})
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := as(srv, short).Do(`{ whoami { name } }`, nil); len(r.Errors) > 0 {
		t.Fatalf("fresh token refused: %+v", r.Errors)
	}
	time.Sleep(time.Until(exp) + 100*time.Millisecond)
	if code, body, _ := post(t, srv.URL+"/graphql", http.Header{"Authorization": {"Bearer " + short}}, `{"query":"{ whoami { name } }"}`); code != http.StatusUnauthorized {
		t.Errorf("expired token: %d %s", code, body)
	}
	// A disabled user: their token and their session stop working.
	u, err := srv.Auth.CreateUser(context.Background(), "alice", "correct horse", access.Operator)
	if err != nil {
		t.Fatal(err)
	}
	owned, _, err := srv.Auth.CreateToken(context.Background(), auth.TokenOptions{Name: "alice-laptop", Role: access.Viewer, UserID: u.ID})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := apitest.Login(srv.URL, "alice", "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*apitest.Client{as(srv, owned), sess} {
		if r, _ := c.Do(`{ whoami { name } }`, nil); len(r.Errors) > 0 {
			t.Fatalf("before disabling: %+v", r.Errors)
		}
	}
	srv.Query(t, `mutation($id: ID!) { updateUser(id: $id, input: {disabled: true}) { user { disabled } errors { message } } }`, map[string]any{"id": fmt.Sprint(u.ID)}, nil)
	for i, c := range []*apitest.Client{as(srv, owned), sess} {
		r, err := c.Do(`{ whoami { name } }`, nil)
		if err == nil && len(r.Errors) == 0 {
			t.Errorf("credential %d of a disabled user still works: %s", i, r.Data)
		}
	}
	if _, err := apitest.Login(srv.URL, "alice", "correct horse"); err == nil {
		t.Error("a disabled user signed in")
	}
}

// wsDial opens a graphql-transport-ws connection with headers and sends connection_init.
func wsDial(ctx context.Context, url string, h http.Header, init map[string]any) (*websocket.Conn, *http.Response, error) {
	conn, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/graphql",
		&websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}, HTTPHeader: h})
	if err != nil {
		return nil, resp, err
	}
	payload, _ := json.Marshal(init)
	if err := wsjson.Write(ctx, conn, map[string]any{"type": "connection_init", "payload": json.RawMessage(payload)}); err != nil {
		return nil, resp, err
	}
	return conn, resp, nil
}

// readUntilClose reads messages until the server closes, returning the close status.
func readUntilClose(ctx context.Context, conn *websocket.Conn) websocket.StatusCode {
	for {
		var m map[string]any
		if err := wsjson.Read(ctx, conn, &m); err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

// WebSocket: no credential → 4401; a cross-origin upgrade → 403; a cookie connection without
// its CSRF token → 4403; a token revoked while subscribed → the subscription ends.
func TestWebSocketAuth(t *testing.T) {
	st := apitest.Open(t, apitest.DSN(t, apitest.SQLite))
	srv := apitest.Serve(t, st)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for name, init := range map[string]map[string]any{
		"no token":    {},
		"wrong token": {"authorization": "Bearer pry_not-a-token-at-all"},
		"not bearer":  {"authorization": "Basic YWRtaW46YWRtaW4="},
	} {
		conn, _, err := wsDial(ctx, srv.URL, nil, init)
		if err != nil {
			t.Fatal(err)
		}
		if got := readUntilClose(ctx, conn); got != 4401 {
			t.Errorf("%s: closed with %d, want 4401", name, got)
		}
	}
	// Cross-origin: refused at the upgrade; the same origin is accepted.
	_, resp, err := wsDial(ctx, srv.URL, http.Header{"Origin": {"http://evil.example"}}, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin upgrade: %v (status %v), want 403", err, resp)
	}
	conn, _, err := wsDial(ctx, srv.URL, http.Header{"Origin": {srv.URL}}, map[string]any{"authorization": "Bearer " + srv.Token})
	if err != nil {
		t.Fatalf("same-origin upgrade refused: %v", err)
	}
	conn.CloseNow()

	// Cookie sessions: the CSRF token must be in connection_init.
	if _, err := srv.Auth.CreateUser(ctx, "bob", "bob-password", access.Viewer); err != nil {
		t.Fatal(err)
	}
	sess, err := apitest.Login(srv.URL, "bob", "bob-password")
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"Cookie": sess.Header["Cookie"]}
	conn, _, err = wsDial(ctx, srv.URL, h, map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	if got := readUntilClose(ctx, conn); got != 4403 {
		t.Errorf("cookie without csrfToken: closed with %d, want 4403", got)
	}
	conn, _, err = wsDial(ctx, srv.URL, h, map[string]any{"csrfToken": sess.Header.Get(auth.CSRFHeader)})
	if err != nil {
		t.Fatal(err)
	}
	var ack map[string]any
	if err := wsjson.Read(ctx, conn, &ack); err != nil || ack["type"] != "connection_ack" {
		t.Errorf("cookie with csrfToken: %v %v", ack, err)
	}
	conn.CloseNow()

	// Revoked while subscribed: the stream ends.
	tok, tk, err := srv.Auth.CreateToken(ctx, auth.TokenOptions{Name: "watcher", Role: access.Viewer})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := apitest.SubscribeWith(ctx, srv.URL, tok, apitest.EventsSubscription, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	srv.Query(t, `mutation { createSite(input: {name: "ws-one"}) { errors { message } } }`, nil, nil)
	if _, err := sub.NextEvent(10 * time.Second); err != nil {
		t.Fatalf("no event before revocation: %v", err)
	}
	revoked := time.Now()
	srv.Query(t, `mutation($id: ID!) { revokeAPIToken(id: $id) { errors { message } } }`, map[string]any{"id": fmt.Sprint(tk.ID)}, nil)
	for range sub.Next {
	}
	t.Logf("subscription ended %s after the revocation (close %d)", time.Since(revoked).Round(time.Millisecond), sub.CloseStatus())
	if time.Since(revoked) > 10*time.Second {
		t.Errorf("subscription outlived its revoked token by %s", time.Since(revoked))
	}
}

// Cookie sessions: sign-in sets an HttpOnly SameSite=Lax cookie; a cookie POST without the CSRF
// token is 403; sign-out ends the session; a wrong password is 401 JSON.
func TestCookieSessionCSRF(t *testing.T) {
	st := apitest.Open(t, apitest.DSN(t, apitest.SQLite))
	srv := apitest.Serve(t, st)
	if _, err := srv.Auth.CreateUser(context.Background(), "carol", "carol-password", access.Operator); err != nil {
		t.Fatal(err)
	}
	code, body, _ := post(t, srv.URL+"/auth/login", nil, `{"name":"carol","password":"nope-nope"}`)
	if code != http.StatusUnauthorized || !strings.Contains(body, `"error"`) {
		t.Errorf("wrong password: %d %s", code, body)
	}
	code, body, hdr := post(t, srv.URL+"/auth/login", nil, `{"name":"carol","password":"carol-password"}`)
	if code != http.StatusOK || !strings.Contains(body, `"role":"OPERATOR"`) || !strings.Contains(body, "csrfToken") {
		t.Fatalf("sign-in: %d %s", code, body)
	}
	sc := hdr.Get("Set-Cookie")
	for _, want := range []string{auth.CookieName + "=", "HttpOnly", "SameSite=Lax", "Path=/"} {
		if !strings.Contains(sc, want) {
			t.Errorf("Set-Cookie %q lacks %s", sc, want)
		}
	}
	var s struct{ CSRFToken string }
	_ = json.Unmarshal([]byte(body), &s)
	cookie := strings.SplitN(sc, ";", 2)[0]
	q := `{"query":"mutation { createSite(input: {name: \"csrf-site\"}) { site { id } errors { message } } }"}`
	if code, body, _ := post(t, srv.URL+"/graphql", http.Header{"Cookie": {cookie}}, q); code != http.StatusForbidden {
		t.Errorf("cookie POST without CSRF: %d %s", code, body)
	}
	if code, body, _ := post(t, srv.URL+"/graphql", http.Header{"Cookie": {cookie}, auth.CSRFHeader: {"wrong"}}, q); code != http.StatusForbidden {
		t.Errorf("cookie POST with a wrong CSRF token: %d %s", code, body)
	}
	if n := st.Client.Site.Query().CountX(context.Background()); n != 0 {
		t.Fatalf("a refused POST wrote %d sites", n)
	}
	if code, body, _ := post(t, srv.URL+"/graphql", http.Header{"Cookie": {cookie}, auth.CSRFHeader: {s.CSRFToken}}, q); code != http.StatusOK || strings.Contains(body, "errors\":[{") {
		t.Errorf("cookie POST with CSRF: %d %s", code, body)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/auth/session", nil)
	req.Header.Set("Cookie", cookie)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusOK {
		t.Errorf("session: %v %v", res, err)
	}
	if code, _, _ := post(t, srv.URL+"/auth/logout", http.Header{"Cookie": {cookie}}, ``); code != http.StatusForbidden {
		t.Errorf("logout without CSRF: %d", code)
	}
	if code, _, _ := post(t, srv.URL+"/auth/logout", http.Header{"Cookie": {cookie}, auth.CSRFHeader: {s.CSRFToken}}, ``); code != http.StatusNoContent {
		t.Errorf("logout: %d", code)
	}
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusUnauthorized {
		t.Errorf("session after logout: %v %v", res.StatusCode, err)
	}
}

// Rate limit: a burst above the limit gets 429 with Retry-After; another identity is unaffected.
func TestRateLimit(t *testing.T) {
	st := apitest.Open(t, apitest.DSN(t, apitest.SQLite))
	srv := apitest.ServeAuth(t, st, graph.Options{}, httpserverAuth(2, 5))
	a, b := token(t, srv, "noisy", access.Viewer), token(t, srv, "quiet", access.Viewer)
	limited, ok := 0, 0
	for range 30 {
		code, _, h := post(t, srv.URL+"/graphql", http.Header{"Authorization": {"Bearer " + a}}, `{"query":"{ whoami { name } }"}`)
		switch code {
		case http.StatusTooManyRequests:
			limited++
			if h.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		case http.StatusOK:
			ok++
		default:
			t.Fatalf("status %d", code)
		}
	}
	if limited == 0 || ok < 5 {
		t.Errorf("noisy identity: %d ok, %d limited", ok, limited)
	}
	for range 3 {
		if code, body, _ := post(t, srv.URL+"/graphql", http.Header{"Authorization": {"Bearer " + b}}, `{"query":"{ whoami { name } }"}`); code != http.StatusOK {
			t.Errorf("quiet identity affected: %d %s", code, body)
		}
	}
	t.Logf("30 requests in a burst: %d ok, %d answered 429", ok, limited)
}

// Audit: a scripted session of a viewer, an operator and an admin (and a sign-in) produces
// events whose actors name them.
func TestAuditActors(t *testing.T) {
	st := apitest.Open(t, apitest.DSN(t, apitest.SQLite))
	srv := apitest.Serve(t, st)
	v, o, a := token(t, srv, "aud-viewer", access.Viewer), token(t, srv, "aud-operator", access.Operator), token(t, srv, "aud-admin", access.Admin)
	must := func(c *apitest.Client, q string) {
		t.Helper()
		r, err := c.Do(q, nil)
		if err != nil || len(r.Errors) > 0 {
			t.Fatalf("%s: %v %+v", q, err, r.Errors)
		}
	}
	must(as(srv, v), `{ sites { totalCount } }`)
	must(as(srv, o), `mutation { createSite(input: {name: "audited"}) { errors { message } } }`)
	must(as(srv, a), `mutation { createUser(input: {name: "dave", password: "dave-password", role: OPERATOR}) { errors { message } } }`)
	must(as(srv, a), `mutation { createAPIToken(input: {name: "aud-new", role: VIEWER}) { token { id } errors { message } } }`)
	if _, err := apitest.Login(srv.URL, "dave", "wrong-password"); err == nil {
		t.Fatal("wrong password accepted")
	}
	dave, err := apitest.Login(srv.URL, "dave", "dave-password")
	if err != nil {
		t.Fatal(err)
	}
	must(dave, `mutation { createRack(input: {name: "r1", siteID: "`+fmt.Sprint(st.Client.Site.Query().FirstIDX(context.Background()))+`"}) { errors { message } } }`)
	var toks struct{ APITokens []struct{ ID, Name string } }
	r, _ := as(srv, a).Do(`{ apiTokens { id name } }`, nil)
	_ = r.Decode(&toks)
	for _, tk := range toks.APITokens {
		if tk.Name == "aud-new" {
			must(as(srv, a), `mutation { revokeAPIToken(id: "`+tk.ID+`") { errors { message } } }`)
		}
	}
	evs := st.Client.Event.Query().AllX(context.Background())
	got := map[string]string{}
	for _, e := range evs {
		got[e.Kind] = e.Actor
	}
	want := map[string]string{
		"site.created":       "token:aud-operator",
		"user.created":       "token:aud-admin",
		"apitoken.created":   "token:aud-admin",
		"apitoken.updated":   "token:aud-admin", // the revocation
		"auth.signin":        "user:dave",
		"auth.signin_failed": "anonymous",
		"rack.created":       "user:dave",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: actor %q, want %q", k, got[k], w)
		}
	}
	for _, e := range evs {
		if strings.HasPrefix(e.Actor, "api:") {
			t.Errorf("%s attributed to a request id (%s)", e.Kind, e.Actor)
		}
	}
	kinds := make([]string, 0, len(got))
	for k := range got {
		kinds = append(kinds, k+"="+got[k])
	}
	sort.Strings(kinds)
	t.Logf("events: %s", strings.Join(kinds, ", "))
}

func httpserverAuth(rate float64, burst int) httpserver.AuthConfig {
	return httpserver.AuthConfig{RateLimit: rate, RateBurst: burst}
}
