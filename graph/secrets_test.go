package graph_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prybar/prybar/internal/access"
	"github.com/prybar/prybar/internal/apitest"
	"github.com/prybar/prybar/internal/auth"
	"github.com/prybar/prybar/internal/httpserver"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Issue 10: no query answer, event, log line or error message contains a BMC password, a token,
// a session cookie, a user's password or a password or token hash, after a scripted session
// that creates and changes all of them (the one place a token is shown, createAPIToken's
// payload, is the exception it is meant to be).
func TestSecretsNeverLeak(t *testing.T) {
	st := apitest.Open(t, apitest.DSN(t, apitest.SQLite))
	var logs syncBuf
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc := auth.New(st, log)
	ts := httptest.NewServer(httpserver.Handler(httpserver.Config{Store: st, Log: log, Auth: httpserver.AuthConfig{Service: svc}}))
	defer ts.Close()
	admin, _, err := svc.CreateToken(context.Background(), auth.TokenOptions{Name: "script-admin", Role: access.Admin})
	if err != nil {
		t.Fatal(err)
	}
	const bmcPW, bmcPW2, userPW = "Bmc-S3cret-pw-1", "Bmc-S3cret-pw-2", "Us3r-pass-word"
	var seen strings.Builder // every answer the script got
	do := func(c *apitest.Client, q string, vars map[string]any) *apitest.Response {
		t.Helper()
		r, err := c.Do(q, vars)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		b, _ := json.Marshal(r)
		seen.Write(b)
		seen.WriteByte('\n')
		return r
	}
	ac := &apitest.Client{URL: ts.URL, Token: admin}
	var m struct {
		CreateMachine struct{ Machine struct{ ID string } }
	}
	_ = do(ac, `mutation { createMachine(input: {name: "leak.example.org"}) { machine { id } } }`, nil).Decode(&m)
	var b struct {
		CreateBMC struct{ Bmc struct{ ID string } }
	}
	_ = do(ac, `mutation($m: ID!, $pw: String!) { createBMC(input: {machineID: $m, protocol: REDFISH, address: "10.9.9.9", username: "root", password: $pw}) { bmc { id } errors { message } } }`,
		map[string]any{"m": m.CreateMachine.Machine.ID, "pw": bmcPW}).Decode(&b)
	do(ac, `mutation($id: ID!, $pw: String!) { updateBMC(id: $id, input: {password: $pw}) { errors { message } } }`, map[string]any{"id": b.CreateBMC.Bmc.ID, "pw": bmcPW2})
	// A bad write with a password in it: the error must not echo it.
	do(ac, `mutation($pw: String!) { createBMC(input: {machineID: "1", protocol: REDFISH, address: "", password: $pw}) { errors { message } } }`, map[string]any{"pw": bmcPW})
	do(ac, `{ bmcs { edges { node { id protocol address port username machine { name } } } } }`, nil)
	do(ac, `mutation($pw: String) { createUser(input: {name: "erin", password: $pw, role: OPERATOR}) { user { id name role } errors { message } } }`, map[string]any{"pw": userPW})
	do(ac, `mutation { createUser(input: {name: "frank", password: "short", role: VIEWER}) { errors { message } } }`, nil)

	// The token: shown once, in this answer only (kept out of seen).
	r, _ := ac.Do(`mutation { createAPIToken(input: {name: "leaky", role: OPERATOR}) { token { id prefix } secret } }`, nil)
	var ct struct {
		CreateAPIToken struct {
			Token  struct{ ID string }
			Secret string
		}
	}
	_ = r.Decode(&ct)
	secret := ct.CreateAPIToken.Secret
	oc := &apitest.Client{URL: ts.URL, Token: secret}
	do(oc, `{ whoami { name kind role } }`, nil)
	do(oc, `mutation { createUser(input: {name: "x", role: ADMIN}) { errors { message } } }`, nil) // forbidden
	do(&apitest.Client{URL: ts.URL, Token: secret + "x"}, `{ whoami { name } }`, nil)
	do(ac, `{ apiTokens { id name prefix role owner createdAt lastUsedAt revokedAt } users { id name role disabled } }`, nil)

	// Sign-ins: a wrong password, a password typed into the name field, then the right one.
	var cookie string
	for _, body := range []string{`{"name":"erin","password":"wrong-password"}`, `{"name":"` + userPW + `","password":"x"}`, `{"name":"erin","password":"` + userPW + `"}`} {
		res, err := http.Post(ts.URL+"/auth/login", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(res.Body)
		res.Body.Close()
		seen.Write(data)
		if c := res.Header.Get("Set-Cookie"); c != "" {
			cookie = strings.TrimPrefix(strings.SplitN(c, ";", 2)[0], auth.CookieName+"=")
		}
	}
	if cookie == "" {
		t.Fatal("no session")
	}
	erin, err := apitest.Login(ts.URL, "erin", userPW)
	if err != nil {
		t.Fatal(err)
	}
	do(erin, `mutation { createSite(input: {name: "erin-site"}) { errors { message } } }`, nil)
	do(ac, fmt.Sprintf(`mutation { revokeAPIToken(id: %q) { token { revokedAt } errors { message } } }`, ct.CreateAPIToken.Token.ID), nil)
	do(oc, `{ whoami { name } }`, nil)
	do(ac, `{ events(first: 1000) { events { seq actor kind objectType changes } } }`, nil)

	// Everything the database knows that must never come out.
	ctx := context.Background()
	forbidden := map[string]string{"BMC password": bmcPW, "new BMC password": bmcPW2, "user password": userPW, "token": secret, "admin token": admin, "session cookie": cookie}
	for _, u := range st.Client.User.Query().AllX(ctx) {
		if u.PasswordHash != "" {
			forbidden["password hash of "+u.Name] = u.PasswordHash
		}
	}
	for _, tk := range st.Client.APIToken.Query().AllX(ctx) {
		forbidden["token hash of "+tk.Name] = tk.Hash
	}
	for _, s := range st.Client.Session.Query().AllX(ctx) {
		forbidden["session hash"] = s.Hash
	}
	var evs strings.Builder
	for _, e := range st.Client.Event.Query().AllX(ctx) {
		j, _ := json.Marshal(e.Changes)
		fmt.Fprintf(&evs, "%s %s %s\n", e.Actor, e.Kind, j)
	}
	sources := map[string]string{"answers": seen.String(), "events": evs.String(), "logs": logs.String()}
	for what, s := range forbidden {
		for where, text := range sources {
			if strings.Contains(text, s) {
				t.Errorf("the %s appears in the %s", what, where)
			}
		}
	}
	if !strings.Contains(evs.String(), "auth.signin_failed") || !strings.Contains(evs.String(), "redacted") {
		t.Errorf("the session's events are missing (failed sign-in, redacted password):\n%s", evs.String())
	}
	t.Logf("grepped %d answers bytes, %d event bytes, %d log bytes for %d secrets", seen.Len(), evs.Len(), len(logs.String()), len(forbidden))
}
