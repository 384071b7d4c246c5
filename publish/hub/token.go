package hub

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// tokenLeeway absorbs clock skew between the signer and the hub.
const tokenLeeway = 30 * time.Second

// audience is what an access-key token must be issued for: the scheme,
// host, port and path of the request (REST) or of /client (clients), plus
// the hub.
type audience struct {
	scheme, host, port string // host without port, lower-case; port always set
	path               string // escaped, as sent
	hub                string // client tokens: aud's ?hub= must be this hub
}

// endpoint is the scheme and host[:port] tokens are issued for.
type endpoint struct{ scheme, host string }

// base is the endpoint as a URL prefix, e.g. http://127.0.0.1:8080.
func (e endpoint) base() string { return e.scheme + "://" + e.host }

// audience is the audience of path at e.
func (e endpoint) audience(path string) audience {
	host, port, err := net.SplitHostPort(e.host)
	if err != nil {
		host, port = strings.Trim(e.host, "[]"), ""
	}
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[e.scheme]
	}
	return audience{scheme: e.scheme, host: strings.ToLower(host), port: port, path: path}
}

// requestEndpoint is the endpoint a request arrived at, as the hub sees it
// without a configured public URL: its Host, and behind a TLS-terminating
// proxy the scheme X-Forwarded-Proto tells. Both come from the client, so
// this is for development; production sets Config.PublicURL.
func requestEndpoint(r *http.Request) endpoint {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p != "" {
		if p = strings.ToLower(strings.TrimSpace(strings.Split(p, ",")[0])); p == "http" || p == "https" {
			scheme = p
		}
	}
	return endpoint{scheme: scheme, host: r.Host}
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
// AccessKey bytes, not expired, not valid for longer than maxTTL from now,
// and an aud matching want. It returns the claims. Errors are for logs
// only: they may quote the token.
func verifyAccessToken(tok string, key []byte, want audience, maxTTL time.Duration) (jwt.MapClaims, error) {
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
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return nil, errors.New("token has no exp")
	}
	if left := time.Until(exp.Time); left > maxTTL+tokenLeeway {
		return nil, fmt.Errorf("token is valid for %v, over the %v accepted", left.Round(time.Second), maxTTL)
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

// audienceMatches compares aud with want. Scheme and host compare case-
// insensitively (as DNS does); the path compares exactly in its escaped
// form (ids are case-sensitive, and "%63lient" is not "client"), ignoring
// a trailing slash; the query is ignored (the .NET SDK signs
// ?api-version) except that a client audience must name exactly want.hub
// (hub names are case-insensitive). The port must be want's, or absent:
// the .NET SDK signs aud without the port. User info, fragments and
// opaque URLs never match.
func audienceMatches(aud string, want audience) bool {
	u, err := url.Parse(aud)
	if err != nil || u.Opaque != "" || u.User != nil || u.Fragment != "" || u.RawFragment != "" || strings.Contains(aud, "#") {
		return false
	}
	if !strings.EqualFold(u.Scheme, want.scheme) || !strings.EqualFold(u.Hostname(), want.host) {
		return false
	}
	if p := u.Port(); p != "" && p != want.port {
		return false
	}
	if strings.TrimRight(u.EscapedPath(), "/") != strings.TrimRight(want.path, "/") {
		return false
	}
	if want.hub != "" {
		hs := u.Query()["hub"]
		if len(hs) != 1 || !strings.EqualFold(hs[0], want.hub) {
			return false
		}
	}
	return true
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
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

// validUser reports whether a user id is safe to carry in tokens and REST
// paths: not empty, not "." or "..", at most 1024 bytes, no '/', '?', '#'
// or control characters (which a careless path builder would turn into
// other routes).
func validUser(u string) bool {
	if u == "" || u == "." || u == ".." || len(u) > 1024 {
		return false
	}
	for _, r := range u {
		if r == '/' || r == '?' || r == '#' || r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// tokenCache remembers REST access tokens verified already: a publisher
// uses one token per URL for minutes (publish/signalr keeps each for half
// its lifetime), and parsing and checking it again on every call cost
// more CPU and garbage than the call's own work. Only tokens that passed
// verifyAccessToken are kept, by their exact text, until they expire; the
// audience is still matched against each request.
type tokenCache struct {
	mu sync.Mutex
	m  map[string]verifiedToken
}

type verifiedToken struct {
	exp  time.Time
	auds []string
}

// maxVerifiedTokens bounds tokenCache; past it the cache starts over.
const maxVerifiedTokens = 4096

// verify is verifyAccessToken for REST calls, whose claims are not used.
func (tc *tokenCache) verify(tok string, key []byte, want audience, maxTTL time.Duration) error {
	now := time.Now()
	tc.mu.Lock()
	v, ok := tc.m[tok]
	tc.mu.Unlock()
	if ok && now.Before(v.exp.Add(tokenLeeway)) {
		for _, a := range v.auds {
			if audienceMatches(a, want) {
				return nil
			}
		}
		return fmt.Errorf("token aud %q is not for this request", truncate(v.auds[0], 200))
	}
	claims, err := verifyAccessToken(tok, key, want, maxTTL)
	if err != nil {
		return err
	}
	exp, _ := claims.GetExpirationTime() // verifyAccessToken requires it
	auds, _ := claims.GetAudience()
	tc.mu.Lock()
	if tc.m == nil || len(tc.m) >= maxVerifiedTokens {
		tc.m = map[string]verifiedToken{}
	}
	tc.m[strings.Clone(tok)] = verifiedToken{exp: exp.Time, auds: auds}
	tc.mu.Unlock()
	return nil
}
