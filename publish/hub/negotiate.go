package hub

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/changecast/changecast/schema/template"
	"github.com/changecast/changecast/schema/wire"
)

// Service is the SignalR service a Negotiator sends clients to: it joins
// users to groups and hands out client URLs and tokens. *signalr.Client
// satisfies it, for Azure SignalR Service (or a built-in hub reached over
// its REST API).
type Service interface {
	// AddUserToGroup adds user to group of hub; the membership outlives
	// the user's connections, for ttl (0: no expiry).
	AddUserToGroup(ctx context.Context, hub, group, user string, ttl time.Duration) error
	// ClientURL is the URL clients of hub connect to.
	ClientURL(hub string) string
	// ClientToken is an access token for a client of hub carrying user,
	// valid for ttl.
	ClientToken(ctx context.Context, hub, user string, ttl time.Duration) (string, error)
}

// service is what a Negotiator needs: a Service, or this hub, which sends
// clients to the host they reached negotiate on.
type service interface {
	clientAccess(ctx context.Context, r *http.Request, hub, user string, ttl time.Duration) (url, token string, err error)
	AddUserToGroup(ctx context.Context, hub, group, user string, ttl time.Duration) error
}

// selfService sends clients to this hub, at the host they reached negotiate
// on (so a page loaded from localhost is not sent to 127.0.0.1, a foreign
// origin). Group joins go straight into the registry.
type selfService struct{ s *Server }

func (ss selfService) clientAccess(_ context.Context, r *http.Request, hub, user string, ttl time.Duration) (string, string, error) {
	a := requestAudience(r, "/client/")
	u := a.scheme + "://" + a.host + "/client/?hub=" + hubKey(hub)
	tok, err := signAccessToken(ss.s.key, u, user, ttl)
	return u, tok, err
}

func (ss selfService) AddUserToGroup(_ context.Context, hub, group, user string, ttl time.Duration) error {
	ss.s.reg.addUserToGroup(hubKey(hub), group, user, ttl, time.Now())
	return nil
}

// remoteService sends clients to the service behind a Service.
type remoteService struct{ Service }

func (rs remoteService) clientAccess(ctx context.Context, _ *http.Request, hub, user string, ttl time.Duration) (string, string, error) {
	tok, err := rs.ClientToken(ctx, hub, user, ttl)
	return rs.ClientURL(hub), tok, err
}

// Negotiator is the app negotiate endpoint, what the Azure Functions
// SignalRConnectionInfo binding does: it authenticates the caller, takes
// the user id from a claim, joins the user to the groups the config derives
// from its claims, and answers {"url","accessToken"} for the official
// clients to follow.
type Negotiator struct {
	cfg    NegotiateConfig // defaults applied
	svc    service
	verify *jwtVerifier // nil: anonymous only
	groups []*template.Claims
	cors   []string
	o      options
}

// NewNegotiator returns the negotiate endpoint of cfg (its Negotiate and
// CORSOrigins, defaults applied to zero fields) for the service svc, e.g.
// a *signalr.Client for Azure SignalR (the built-in hub's Server has its
// own). Mount Handler, or ServeHTTP at Path.
func NewNegotiator(cfg Config, svc Service, opts ...Option) (*Negotiator, error) {
	cfg = cfg.withDefaults()
	if err := errors.Join(cfg.validateNegotiate()...); err != nil {
		return nil, err
	}
	o := defaultOptions()
	for _, f := range opts {
		f(&o)
	}
	return newNegotiator(cfg, remoteService{svc}, o)
}

// newNegotiator builds the endpoint from a valid cfg with defaults applied.
func newNegotiator(cfg Config, svc service, o options) (*Negotiator, error) {
	n := &Negotiator{cfg: cfg.Negotiate, svc: svc, cors: cfg.CORSOrigins, o: o}
	for _, g := range cfg.Negotiate.Groups {
		t, err := template.ParseClaims(g)
		if err != nil {
			return nil, err
		}
		n.groups = append(n.groups, t)
	}
	if j := cfg.Negotiate.Auth.JWT; j != nil {
		v := &jwtVerifier{issuer: j.Issuer, audience: j.Audience}
		switch {
		case j.HS256Secret != "":
			v.hs = []byte(j.HS256Secret)
		case j.JWKSFile != "":
			b, err := os.ReadFile(j.JWKSFile)
			if err != nil {
				return nil, fmt.Errorf("hub: negotiate jwksFile: %w", err)
			}
			keys, err := parseJWKS(b)
			if err != nil {
				return nil, fmt.Errorf("hub: negotiate jwksFile %s: %w", j.JWKSFile, err)
			}
			v.jwks = &jwks{keys: keys}
		default:
			v.jwks = &jwks{url: j.JWKSURL, client: o.jwksClient}
		}
		n.verify = v
	}
	return n, nil
}

// Path is where the endpoint answers: {negotiate.path}/negotiate.
func (n *Negotiator) Path() string { return strings.TrimRight(n.cfg.Path, "/") + "/negotiate" }

// Handler serves POST Path with the configured CORS.
func (n *Negotiator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST "+n.Path(), n)
	return withCORS(n.cors, mux)
}

// ServeHTTP answers one negotiate request.
func (n *Negotiator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hub := r.URL.Query().Get("hub")
	if hub == "" {
		hub = n.cfg.Hub
	}
	if !validHub(hub) {
		writeError(w, http.StatusBadRequest, "Error.InvalidHub", "give a valid hub= query parameter")
		return
	}
	claims, err := n.authenticate(r)
	if err != nil {
		n.o.log.Info("hub: negotiate refused", "err", err)
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "Error.Unauthorized", err.Error())
		return
	}
	user := ""
	if claims != nil {
		u, ok := wire.ScalarString(claims[n.cfg.UserClaim])
		if !ok || u == "" {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "Error.Unauthorized", "token has no "+n.cfg.UserClaim+" claim")
			return
		}
		user = u
	} else {
		// Anonymous: a user id of its own, so that groups without claim
		// holes can still be joined per user.
		user = "anonymous-" + newID()
	}
	for _, g := range joinGroups(n.groups, claims) {
		if err := n.svc.AddUserToGroup(r.Context(), hub, g, user, n.cfg.GroupTTL); err != nil {
			n.o.log.Error("hub: negotiate: join group failed", "hub", hub, "group", g, "err", err)
			writeError(w, http.StatusServiceUnavailable, "Error.Unavailable", "could not join the user's groups; try again")
			return
		}
	}
	u, tok, err := n.svc.clientAccess(r.Context(), r, hub, user, n.cfg.TokenTTL)
	if err != nil {
		n.o.log.Error("hub: negotiate: client token failed", "hub", hub, "err", err)
		writeError(w, http.StatusServiceUnavailable, "Error.Unavailable", "could not get a client token; try again")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, struct {
		URL         string `json:"url"`
		AccessToken string `json:"accessToken"`
	}{u, tok})
}

// joinGroups renders the group rules for claims (nil: anonymous, only rules
// without holes), valid names only, each once.
func joinGroups(rules []*template.Claims, claims map[string]any) []string {
	var out []string
	seen := map[string]bool{}
	for _, t := range rules {
		for _, g := range t.Render(claims) {
			if validGroup(g) && !seen[g] {
				seen[g] = true
				out = append(out, g)
			}
		}
	}
	return out
}

// authenticate returns the caller's verified claims, or nil for an
// anonymous caller where that is allowed. With both anonymous and jwt
// configured, a token is optional but checked when present.
func (n *Negotiator) authenticate(r *http.Request) (map[string]any, error) {
	tok := bearer(r, false)
	if tok == "" && r.Header.Get("Authorization") != "" {
		return nil, errors.New("Authorization is not a Bearer token")
	}
	if tok == "" {
		if n.cfg.Auth.Anonymous {
			return nil, nil
		}
		return nil, errors.New("no bearer token")
	}
	if n.verify == nil {
		return nil, nil // anonymous only: a token is not looked at
	}
	claims, err := n.verify.verify(r.Context(), tok)
	if err != nil {
		return nil, fmt.Errorf("invalid token: %w", err)
	}
	return claims, nil
}

// jwtVerifier checks app users' tokens: HS256 with a secret, or RS256 with
// keys from a JWKS.
type jwtVerifier struct {
	hs               []byte
	jwks             *jwks
	issuer, audience string
}

func (v *jwtVerifier) verify(ctx context.Context, tok string) (jwt.MapClaims, error) {
	opts := []jwt.ParserOption{jwt.WithExpirationRequired(), jwt.WithLeeway(tokenLeeway)}
	if v.issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.issuer))
	}
	if v.audience != "" {
		opts = append(opts, jwt.WithAudience(v.audience))
	}
	var keyFunc jwt.Keyfunc
	if v.hs != nil {
		opts = append(opts, jwt.WithValidMethods([]string{"HS256"}))
		keyFunc = func(*jwt.Token) (any, error) { return v.hs, nil }
	} else {
		opts = append(opts, jwt.WithValidMethods([]string{"RS256"}))
		keyFunc = func(t *jwt.Token) (any, error) {
			kid, _ := t.Header["kid"].(string)
			return v.jwks.key(ctx, kid)
		}
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(tok, claims, keyFunc, opts...); err != nil {
		return nil, err
	}
	return claims, nil
}

// jwks holds RSA keys by kid, from a file (fixed) or a URL (fetched on
// first use and again, at most once a minute, when a kid is unknown, which
// is how key rotation shows).
type jwks struct {
	url     string
	client  *http.Client
	mu      sync.Mutex
	keys    map[string]*rsa.PublicKey
	fetched time.Time
}

const jwksRefetchEvery = time.Minute

func (k *jwks) key(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if key := lookupKey(k.keys, kid); key != nil {
		return key, nil
	}
	if k.url != "" && (k.fetched.IsZero() || time.Since(k.fetched) >= jwksRefetchEvery) {
		k.fetched = time.Now()
		keys, err := k.fetch(ctx)
		if err != nil {
			return nil, err
		}
		k.keys = keys
		if key := lookupKey(k.keys, kid); key != nil {
			return key, nil
		}
	}
	return nil, fmt.Errorf("no key with kid %q", truncate(kid, 64))
}

func (k *jwks) fetch(ctx context.Context) (map[string]*rsa.PublicKey, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch JWKS: %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	return parseJWKS(b)
}

// lookupKey finds kid; a token without kid matches a set of one key.
func lookupKey(keys map[string]*rsa.PublicKey, kid string) *rsa.PublicKey {
	if key := keys[kid]; key != nil {
		return key
	}
	if kid == "" && len(keys) == 1 {
		for _, key := range keys {
			return key
		}
	}
	return nil
}

// parseJWKS reads the RSA signing keys of a JSON Web Key Set (RFC 7517);
// other key types are skipped.
func parseJWKS(b []byte) (map[string]*rsa.PublicKey, error) {
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			Use string `json:"use"`
			Kid string `json:"kid"`
			N   string `json:"n"`
			E   string `json:"e"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("not a JWKS: %w", err)
	}
	keys := map[string]*rsa.PublicKey{}
	for _, k := range set.Keys {
		if k.Kty != "RSA" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		n, err1 := base64.RawURLEncoding.DecodeString(strings.TrimRight(k.N, "="))
		e, err2 := base64.RawURLEncoding.DecodeString(strings.TrimRight(k.E, "="))
		if err1 != nil || err2 != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return nil, fmt.Errorf("key %q: bad n or e", k.Kid)
		}
		ev := int(new(big.Int).SetBytes(e).Int64())
		if ev < 3 {
			return nil, fmt.Errorf("key %q: bad exponent", k.Kid)
		}
		keys[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: ev}
	}
	if len(keys) == 0 {
		return nil, errors.New("no RSA signing keys")
	}
	return keys, nil
}
