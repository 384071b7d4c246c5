// Package console is the web console of a running worker: a page at
// /console/ (plain HTML, JS and CSS embedded here, no build step) that
// reads GET /admin/status and calls the admin API with the bearer token
// the operator gives it (kept in the tab's sessionStorage; #token=… in the
// URL fragment also works). The worker serves it only when
// server.adminToken is set; the page itself holds no secret.
package console

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the page under /console/.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix("/console/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:")
		files.ServeHTTP(w, r)
	})
}
