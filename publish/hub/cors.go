package hub

import (
	"net/http"
	"net/url"
	"strings"
)

// origins says which browser origins may call the hub (CORS) and open its
// WebSockets: the configured ones ("*": any), or loopback ones only when
// none is configured.
type origins struct {
	any      bool
	loopback bool
	allowed  map[string]bool
	self     string // the hub's own origin (Config.PublicURL), always allowed
}

func newOrigins(list []string, publicURL string) origins {
	o := origins{allowed: map[string]bool{}, loopback: len(list) == 0}
	for _, s := range list {
		if s == "*" {
			o.any = true
		}
		o.allowed[normOrigin(s)] = true
	}
	if u, err := parsePublicURL(publicURL); err == nil && publicURL != "" {
		o.self = normOrigin(u.Scheme + "://" + u.Host)
	}
	return o
}

func normOrigin(s string) string { return strings.ToLower(strings.TrimRight(s, "/")) }

// allows reports whether a browser page of origin o may call the hub.
func (p origins) allows(o string) bool {
	n := normOrigin(o)
	if p.any || p.allowed[n] || (p.self != "" && n == p.self) {
		return true
	}
	if !p.loopback {
		return false
	}
	u, err := url.Parse(o)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && isLoopbackHost(u.Hostname())
}

// withCORS lets the allowed browser origins call h. The Origin is echoed
// rather than answered with "*" because the official client sends
// credentials (withCredentials), and browsers refuse "*" with credentials.
func withCORS(p origins, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o := r.Header.Get("Origin")
		w.Header().Add("Vary", "Origin")
		if o == "" || !p.allows(o) {
			h.ServeHTTP(w, r)
			return
		}
		hdr := w.Header()
		hdr.Set("Access-Control-Allow-Origin", o)
		hdr.Set("Access-Control-Allow-Credentials", "true")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			hdr.Set("Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, DELETE, OPTIONS")
			if rh := r.Header.Get("Access-Control-Request-Headers"); rh != "" {
				hdr.Set("Access-Control-Allow-Headers", rh)
			}
			hdr.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.ServeHTTP(w, r)
	})
}
