package frontend

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/fstest"
)

func TestHandler(t *testing.T) {
	fsys := fstest.MapFS{
		"index.html":         {Data: []byte("<html>spa</html>")},
		"graphiql.html":      {Data: []byte("<html>graphiql</html>")},
		"favicon.svg":        {Data: []byte("<svg/>")},
		"assets/main-abc.js": {Data: []byte("console.log(1)")},
	}
	h := handler(fsys)
	cases := []struct {
		method, path string
		status       int
		body, cache  string
	}{
		{"GET", "/", 200, "<html>spa</html>", "no-cache"},
		{"GET", "/index.html", 200, "<html>spa</html>", "no-cache"},
		{"GET", "/racks/UmFjazox", 200, "<html>spa</html>", "no-cache"},
		{"GET", "/no/such/route", 200, "<html>spa</html>", "no-cache"},
		{"GET", "/graphiql", 200, "<html>graphiql</html>", "no-cache"},
		{"GET", "/assets/main-abc.js", 200, "console.log(1)", "public, max-age=31536000, immutable"},
		{"GET", "/assets/main-old.js", 404, "", ""},
		{"GET", "/favicon.svg", 200, "<svg/>", "no-cache"},
		{"GET", "/../../etc/passwd", 200, "<html>spa</html>", "no-cache"},
		{"POST", "/", 405, "", ""},
		{"GET", "/auth/session", 404, "", ""},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		if rec.Code != c.status {
			t.Errorf("%s %s: status %d, want %d", c.method, c.path, rec.Code, c.status)
			continue
		}
		if c.body != "" && rec.Body.String() != c.body {
			t.Errorf("%s %s: body %q, want %q", c.method, c.path, rec.Body.String(), c.body)
		}
		if c.cache != "" && rec.Header().Get("Cache-Control") != c.cache {
			t.Errorf("%s %s: Cache-Control %q, want %q", c.method, c.path, rec.Header().Get("Cache-Control"), c.cache)
		}
	}
}

// The embedded tree always has the placeholder, so a binary built without Node still serves a page.
func TestHandlerServesEmbedded(t *testing.T) {
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("GET /: %d %q", rec.Code, rec.Header().Get("Cache-Control"))
	}
}
