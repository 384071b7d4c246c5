package hub

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// tokenLeeway absorbs clock skew between the signer and the hub.
const tokenLeeway = 30 * time.Second

// audience is what an access-key token must be issued for: the scheme, host
// and path of the request (REST) or of /client (clients), plus the hub.
type audience struct {
	scheme, host, path string
	hub                string // client tokens: the ?hub= of aud, when it has one, must match
}

// requestAudience is the audience a request to path must carry, as seen by
// the hub: behind a TLS-terminating proxy X-Forwarded-Proto tells the scheme.
func requestAudience(r *http.Request, path string) audience {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p != "" {
		scheme = strings.ToLower(strings.TrimSpace(strings.Split(p, ",")[0]))
	}
	return audience{scheme: scheme, host: r.Host, path: path}
}

// signAccessToken signs an access-key JWT (HS256 over the key's UTF-8
// bytes) for audience aud, carrying user (when not empty) as asrs.s.uid,
// as Azure SignalR Service and its SDKs do.
func signAccessToken(key, aud, user string, ttl time.Duration) (string, error) {
	now := time.Now()
	claims := jwt.MapClaims{"aud": aud, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(ttl).Unix()}
	if user != "" {
		claims["asrs.s.uid"] = user
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(key))
}

// verifyAccessToken checks an access-key JWT: HS256 signed with the raw
// AccessKey bytes, not expired, aud matching want leniently. It returns the
// claims.
func verifyAccessToken(tok string, key []byte, want audience) (jwt.MapClaims, error) {
	if tok == "" {
		return nil, errors.New("no access token")
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return key, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(),
		jwt.WithLeeway(tokenLeeway))
	if err != nil {
		return nil, err
	}
	auds, err := claims.GetAudience()
	if err != nil || len(auds) == 0 {
		return nil, errors.New("token has no aud")
	}
	for _, a := range auds {
		if audienceMatches(a, want) {
			return claims, nil
		}
	}
	return nil, fmt.Errorf("token aud %q is not for this request", truncate(auds[0], 200))
}

// audienceMatches compares aud with want on scheme, host and path, case-
// insensitively, ignoring port, query and trailing slash: the .NET SDK signs
// aud without the port and with ?api-version, the docs say with neither, and
// both must work. Loopback names are one host, so a token for localhost
// works on 127.0.0.1. A hub named in aud's query must be want.hub.
func audienceMatches(aud string, want audience) bool {
	u, err := url.Parse(aud)
	if err != nil {
		return false
	}
	if !strings.EqualFold(u.Scheme, want.scheme) || !sameHost(u.Hostname(), hostOnly(want.host)) {
		return false
	}
	p, err := url.PathUnescape(u.EscapedPath())
	if err != nil {
		return false
	}
	if !strings.EqualFold(strings.TrimRight(p, "/"), strings.TrimRight(want.path, "/")) {
		return false
	}
	if h := u.Query().Get("hub"); h != "" && want.hub != "" && !strings.EqualFold(h, want.hub) {
		return false
	}
	return true
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

func sameHost(a, b string) bool {
	return strings.EqualFold(a, b) || (isLoopback(a) && isLoopback(b))
}

func isLoopback(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// bearer returns the token of an "Authorization: Bearer" header, or, when
// allowQuery (WebSocket upgrades, where browsers cannot set headers), of
// the access_token query parameter.
func bearer(r *http.Request, allowQuery bool) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := cutPrefixFold(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
		return ""
	}
	if allowQuery {
		return r.URL.Query().Get("access_token")
	}
	return ""
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// userOf is the user id a client token carries: asrs.s.uid (what the SDKs
// and Functions emit), then nameid (the docs), then sub.
func userOf(claims jwt.MapClaims) string {
	for _, k := range []string{"asrs.s.uid", "nameid", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier", "sub"} {
		if s, ok := claims[k].(string); ok && s != "" {
			return s
		}
	}
	return ""
}
