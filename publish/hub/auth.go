package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// AppServiceAuth trusts the headers App Service and Container Apps
// authentication ("easy auth") set: the platform's front end
// authenticates the user, strips any X-MS-CLIENT-PRINCIPAL* header the
// caller sent and sets its own. Anyone else can send those headers, so
// they count only from TrustedProxies.
type AppServiceAuth struct {
	// TrustedProxies are the CIDRs (or single addresses) the headers are
	// taken from; from any other address they are ignored. Required.
	TrustedProxies []string
	// UserClaim is the principal's claim (typ) holding the user id.
	// Zero: the X-MS-CLIENT-PRINCIPAL-ID header.
	UserClaim string
}

// ProxyAuth trusts the headers an authenticating proxy sets, as
// oauth2-proxy does: X-Forwarded-User (the user id), X-Forwarded-Email and
// X-Forwarded-Groups (comma-separated), as the claims sub, email and
// groups. Like AppService, only from TrustedProxies.
type ProxyAuth struct {
	// TrustedProxies are the CIDRs (or single addresses) the headers are
	// taken from. Required.
	TrustedProxies []string
}

// WebhookAuth asks the app who the caller is: negotiate POSTs the
// caller's Headers to URL with {"hub": …}, and the app answers 200
// {"userId", "groups", "claims", "ttl"}, or 401 or 403, passed on.
type WebhookAuth struct {
	// URL is the app's endpoint (http or https). Required.
	URL string
	// Timeout bounds one call; past it negotiate answers 503. Zero:
	// DefaultWebhookTimeout.
	Timeout time.Duration
	// Headers are the caller's request headers forwarded. Zero:
	// DefaultWebhookHeaders (Authorization and Cookie).
	Headers []string
	// CacheTTL keeps an answer for callers with the same forwarded
	// headers and hub this long (an answer's ttl may shorten it). Zero: no
	// cache, the app is asked every time.
	CacheTTL time.Duration
}

// Webhook defaults.
const (
	DefaultWebhookTimeout = 3 * time.Second
	// webhookCacheEntries bounds the webhook's answer cache.
	webhookCacheEntries = 10_000
)

// DefaultWebhookHeaders are the request headers a webhook gets by default.
var DefaultWebhookHeaders = []string{"Authorization", "Cookie"}

// validateAuthMethods checks the identity providers besides a JWT secret
// or JWKS: App Service, Proxy, Webhook and a JWT Authority.
func validateAuthMethods(a NegotiateAuth) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("hub: "+field+": "+format, args...))
	}
	cidrs := func(field string, list []string) {
		if len(list) == 0 {
			bad(field, "is required: the addresses of the proxy that sets the headers (anyone else could send them)")
		}
		for i, c := range list {
			if _, err := parseTrusted(c); err != nil {
				bad(fmt.Sprintf("%s[%d]", field, i), "%q is not a CIDR such as 10.0.0.0/8", c)
			}
		}
	}
	if s := a.AppService; s != nil {
		cidrs("Negotiate.Auth.AppService.TrustedProxies", s.TrustedProxies)
	}
	if p := a.Proxy; p != nil {
		cidrs("Negotiate.Auth.Proxy.TrustedProxies", p.TrustedProxies)
	}
	if w := a.Webhook; w != nil {
		if u, err := url.Parse(w.URL); w.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("Negotiate.Auth.Webhook.URL", "%q is not an http(s) URL", w.URL)
		}
		if w.Timeout < 0 || w.CacheTTL < 0 {
			bad("Negotiate.Auth.Webhook", "Timeout and CacheTTL must not be negative")
		}
		for i, h := range w.Headers {
			if h == "" || strings.ContainsAny(h, " :\t\r\n") {
				bad(fmt.Sprintf("Negotiate.Auth.Webhook.Headers[%d]", i), "%q is not a header name", h)
			}
		}
	}
	if j := a.JWT; j != nil && j.Authority != "" {
		if !jwksURLOK(j.Authority) {
			bad("Negotiate.Auth.JWT.Authority", "%q is not an https URL (http only on a loopback host)", j.Authority)
		}
		if j.Audience == "" {
			bad("Negotiate.Auth.JWT.Audience", "is required with an Authority")
		}
	}
	return errs
}

// parseTrusted reads a CIDR, or a single address as its own /32 or /128.
func parseTrusted(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// trusted is a list of proxy networks.
type trusted []netip.Prefix

func newTrusted(list []string) (trusted, error) {
	var t trusted
	for _, s := range list {
		p, err := parseTrusted(s)
		if err != nil {
			return nil, fmt.Errorf("hub: trusted proxy %q: %w", s, err)
		}
		t = append(t, p)
	}
	return t, nil
}

// has says whether the request came straight from a trusted proxy:
// RemoteAddr, never X-Forwarded-For (which the caller writes).
func (t trusted) has(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// identity is who an identity provider says the caller is.
type identity struct {
	user   string         // "": the configured user claim's value
	claims map[string]any // for the group templates
	groups []string       // joined as given (the webhook's)
}

// authenticators are the configured identity providers, in the order
// they are asked.
type authenticators struct {
	appService *appServiceAuth
	proxy      *proxyAuth
	verify     *jwtVerifier // nil: no JWT
	webhook    *webhookAuth
	anonymous  bool
}

func newAuthenticators(a NegotiateAuth, o options) (authenticators, error) {
	out := authenticators{anonymous: a.Anonymous}
	var err error
	if s := a.AppService; s != nil {
		if out.appService, err = newAppServiceAuth(*s); err != nil {
			return out, err
		}
	}
	if p := a.Proxy; p != nil {
		t, err := newTrusted(p.TrustedProxies)
		if err != nil {
			return out, err
		}
		out.proxy = &proxyAuth{trusted: t}
	}
	if j := a.JWT; j != nil {
		if out.verify, err = newJWTVerifier(j, o); err != nil {
			return out, err
		}
	}
	if w := a.Webhook; w != nil {
		out.webhook = newWebhookAuth(*w, o.log)
	}
	return out, nil
}

// authenticate returns who the caller is, or nil for an anonymous caller
// where that is allowed. The platform's headers come first (from trusted
// proxies only: from anyone else they are not looked at), then a bearer
// token when JWT is configured, then the webhook; with Anonymous, a caller
// that brings no credential is let in, and one that brings a bad one is
// not. Errors are 401 unless they are *AuthError (the webhook's 403 and
// 503).
func (a *authenticators) authenticate(ctx context.Context, r *http.Request, hub string) (*identity, error) {
	id, err := a.identify(ctx, r, hub)
	if err != nil && !errors.As(err, new(*AuthError)) {
		// Say in the (debug) log when platform headers were ignored: it is
		// how a wrong trustedProxies shows.
		if a.appService != nil && !a.appService.trusted.has(r) && r.Header.Get(headerPrincipalID) != "" {
			err = fmt.Errorf("%w (%s from %s ignored: not in appService.trustedProxies)", err, headerPrincipalID, r.RemoteAddr)
		} else if a.proxy != nil && !a.proxy.trusted.has(r) && r.Header.Get("X-Forwarded-User") != "" {
			err = fmt.Errorf("%w (X-Forwarded-User from %s ignored: not in proxy.trustedProxies)", err, r.RemoteAddr)
		}
	}
	return id, err
}

func (a *authenticators) identify(ctx context.Context, r *http.Request, hub string) (*identity, error) {
	if a.appService != nil {
		if id, err := a.appService.authenticate(r); id != nil || err != nil {
			return id, err
		}
	}
	if a.proxy != nil {
		if id, err := a.proxy.authenticate(r); id != nil || err != nil {
			return id, err
		}
	}
	tok := bearer(r, false)
	if a.verify != nil && tok != "" {
		claims, err := a.verify.verify(ctx, tok)
		if err != nil {
			return nil, err
		}
		return &identity{claims: claims}, nil
	}
	if a.webhook != nil {
		if !a.anonymous || a.webhook.hasCredential(r) {
			return a.webhook.authenticate(ctx, r, hub)
		}
		return nil, nil
	}
	if tok == "" && r.Header.Get("Authorization") != "" {
		return nil, errors.New("Authorization is not a Bearer token")
	}
	if a.anonymous {
		// No token, or nothing that could check one: it is not looked at.
		return nil, nil
	}
	if tok == "" {
		return nil, errors.New("no credential")
	}
	return nil, errors.New("no identity provider takes a bearer token")
}
