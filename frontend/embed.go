// Package frontend embeds the web console (frontend/dist/app, built by `npm run build`) into the Go
// binary and serves it: hashed assets cached for a year, HTML never cached, client-side routes
// answered with index.html, and GraphiQL (bundled, no CDN) at /graphiql. A binary built without
// Node carries only the committed placeholder page (frontend/dist/index.html).
package frontend

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed all:dist
var dist embed.FS

// Built reports whether the console was built into this binary (rather than the placeholder).
func Built() bool {
	_, err := fs.Stat(dist, "dist/app/index.html")
	return err == nil
}

// Handler serves the SPA.
func Handler() http.Handler {
	root := "dist"
	if Built() {
		root = "dist/app"
	}
	sub, err := fs.Sub(dist, root)
	if err != nil {
		panic(err) // the embed directive guarantees dist exists
	}
	return handler(sub)
}

func handler(sub fs.FS) http.Handler {
	files := http.FileServer(http.FS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
		switch {
		case strings.HasPrefix(p, "assets/"):
			// Hashed names: a missing one is a real 404 (a stale page), never the SPA's index.
			if _, err := fs.Stat(sub, p); err != nil {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
			files.ServeHTTP(w, r)
			return
		case p == "auth" || strings.HasPrefix(p, "auth/") || strings.HasPrefix(p, "graphql/"):
			// API namespaces, never client routes: a server without access control answers 404
			// here, which the console reads as "auth disabled".
			http.NotFound(w, r)
			return
		case p == "graphiql" || p == "graphiql/":
			if _, err := fs.Stat(sub, "graphiql.html"); err == nil {
				serveHTML(w, r, sub, "graphiql.html")
				return
			}
		}
		if p != "" && p != "index.html" {
			if st, err := fs.Stat(sub, p); err == nil && !st.IsDir() {
				w.Header().Set("Cache-Control", "no-cache")
				files.ServeHTTP(w, r)
				return
			}
		}
		// Everything else is a client-side route: the SPA's router decides (its not-found page
		// included).
		serveHTML(w, r, sub, "index.html")
	})
}

func serveHTML(w http.ResponseWriter, r *http.Request, sub fs.FS, name string) {
	b, err := fs.ReadFile(sub, name)
	if err != nil {
		http.Error(w, "console not built", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// The HTML names the current hashed assets: revalidate it every time.
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(b)
}
