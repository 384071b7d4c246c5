package hub

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// asymmetricAlgs are the JWS algorithms a public key may verify. HMAC
// and "none" are not among them: a token naming HS256 must never be
// checked with a public key as its secret (key confusion).
var asymmetricAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// newJWTVerifier builds the verifier of j (valid): a secret, a JWKS file,
// a JWKS URL, or an OpenID Connect authority whose discovery document
// names the JWKS and the issuer.
func newJWTVerifier(j *JWTAuth, o options) (*jwtVerifier, error) {
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
	case j.Authority != "":
		v.oidc = &oidcProvider{authority: strings.TrimRight(j.Authority, "/"), client: o.jwksClient}
		v.jwks = &jwks{fetch: v.oidc.fetchKeys, every: o.jwksRefetch}
	default:
		v.jwks = &jwks{fetch: func(ctx context.Context) (map[string]jwk, error) {
			return fetchJWKS(ctx, o.jwksClient, j.JWKSURL)
		}, every: o.jwksRefetch}
	}
	return v, nil
}

// jwtVerifier checks app users' tokens: HS256 with a secret, or the
// asymmetric algorithms with keys from a JWKS (a file, a URL, or the one
// an OpenID Connect authority names).
type jwtVerifier struct {
	hs               []byte
	jwks             *jwks
	oidc             *oidcProvider // set with an authority
	issuer, audience string        // issuer with an authority: overrides the discovered one
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
		opts = append(opts, jwt.WithValidMethods(asymmetricAlgs))
		keyFunc = func(t *jwt.Token) (any, error) {
			kid, _ := t.Header["kid"].(string)
			k, err := v.jwks.key(ctx, kid)
			if err != nil {
				return nil, err
			}
			// The key decides the algorithm, never the token: an RSA key
			// verifies RS* and PS* only, a P-256 key ES256 only.
			if alg := t.Method.Alg(); !slices.Contains(k.algs, alg) {
				return nil, fmt.Errorf("alg %q does not match key %q", truncate(alg, 16), truncate(kid, 64))
			}
			return k.key, nil
		}
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(tok, claims, keyFunc, opts...); err != nil {
		if ku := (*keysUnavailable)(nil); errors.As(err, &ku) {
			return nil, &AuthError{Status: http.StatusServiceUnavailable, Code: "Error.Unavailable",
				Msg: "the identity provider's keys could not be fetched; try again", Err: err}
		}
		return nil, err
	}
	if v.oidc != nil && v.issuer == "" {
		iss, _ := claims["iss"].(string)
		if !issuerMatches(v.oidc.currentIssuer(), iss, claims) {
			return nil, fmt.Errorf("token issuer %q is not the authority's", truncate(iss, 128))
		}
	}
	return claims, nil
}

// issuerMatches says whether a token's iss is the issuer a discovery
// document gave. Microsoft Entra ID's multi-tenant endpoints (common,
// organizations) give "https://login.microsoftonline.com/{tenantid}/v2.0":
// there the token's own tid claim fills the hole, so the token must come
// from the tenant it says it belongs to.
func issuerMatches(want, iss string, claims map[string]any) bool {
	if want == "" || iss == "" {
		return false
	}
	if !strings.Contains(want, "{tenantid}") {
		return iss == want
	}
	tid, _ := claims["tid"].(string)
	if tid == "" || strings.ContainsAny(tid, "/?#{}") {
		return false
	}
	return iss == strings.ReplaceAll(want, "{tenantid}", tid)
}

// oidcProvider is an OpenID Connect authority: its discovery document
// gives the issuer and the JWKS URL, fetched with the keys (so a refetch
// on an unknown kid also follows a moved jwks_uri).
type oidcProvider struct {
	authority string
	client    *http.Client

	mu     sync.Mutex
	issuer string // of the last successful fetch
}

func (p *oidcProvider) currentIssuer() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.issuer
}

// fetchKeys reads the discovery document, then the keys it names.
func (p *oidcProvider) fetchKeys(ctx context.Context) (map[string]jwk, error) {
	b, err := getJSON(ctx, p.client, p.authority+"/.well-known/openid-configuration")
	if err != nil {
		return nil, fmt.Errorf("OpenID Connect discovery: %w", err)
	}
	issuer, jwksURI, err := parseDiscovery(b)
	if err != nil {
		return nil, fmt.Errorf("OpenID Connect discovery of %s: %w", p.authority, err)
	}
	keys, err := fetchJWKS(ctx, p.client, jwksURI)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.issuer = issuer
	p.mu.Unlock()
	return keys, nil
}

// parseDiscovery takes issuer and jwks_uri from an OpenID Connect
// discovery document; jwks_uri must be https (http only on a loopback
// host), like a configured jwksURL.
func parseDiscovery(b []byte) (issuer, jwksURI string, err error) {
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return "", "", fmt.Errorf("not a discovery document: %w", err)
	}
	if doc.Issuer == "" {
		return "", "", errors.New("no issuer")
	}
	if !jwksURLOK(doc.JWKSURI) {
		return "", "", fmt.Errorf("jwks_uri %q is not an https URL (http only on a loopback host)", truncate(doc.JWKSURI, 256))
	}
	return doc.Issuer, doc.JWKSURI, nil
}

// jwk is one verification key and the algorithms it may verify.
type jwk struct {
	key  any // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	algs []string
}

// jwks holds keys by kid, fixed (a file) or fetched (on first use and
// again, at most once per every, when a kid is unknown, which is how key
// rotation shows; a failed fetch keeps the keys it had, so a provider that
// is down does not stop known users). A fetch runs outside the lock:
// lookups of known kids never wait for one; lookups of unknown kids wait
// for the fetch in flight instead of starting another.
type jwks struct {
	fetch func(context.Context) (map[string]jwk, error) // nil: fixed keys
	every time.Duration

	mu       sync.Mutex
	keys     map[string]jwk // replaced whole, never changed
	fetched  time.Time
	inflight chan struct{} // closed when the fetch in flight ends; nil: none
}

func (k *jwks) key(ctx context.Context, kid string) (jwk, error) {
	k.mu.Lock()
	if key, ok := lookupKey(k.keys, kid); ok {
		k.mu.Unlock()
		return key, nil
	}
	if ch := k.inflight; ch != nil {
		k.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return jwk{}, ctx.Err()
		}
		return k.lookup(kid)
	}
	if k.fetch == nil || (!k.fetched.IsZero() && time.Since(k.fetched) < k.every) {
		k.mu.Unlock()
		return jwk{}, fmt.Errorf("no key with kid %q", truncate(kid, 64))
	}
	ch := make(chan struct{})
	k.inflight, k.fetched = ch, time.Now()
	k.mu.Unlock()

	// Detached from the request: the fetch serves every waiter, and one
	// caller going away must not fail it for the others.
	ctx2, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	keys, err := k.fetch(ctx2)
	cancel()
	k.mu.Lock()
	if err == nil {
		k.keys = keys
	}
	k.inflight = nil
	close(ch)
	k.mu.Unlock()
	if err != nil {
		return jwk{}, &keysUnavailable{err}
	}
	return k.lookup(kid)
}

// keysUnavailable is a token whose key could not be fetched: the
// provider is down or unreachable, not the token bad, so the caller is
// told to retry (503) rather than to sign in again.
type keysUnavailable struct{ err error }

func (e *keysUnavailable) Error() string {
	return "identity provider keys unavailable: " + e.err.Error()
}
func (e *keysUnavailable) Unwrap() error { return e.err }

func (k *jwks) lookup(kid string) (jwk, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if key, ok := lookupKey(k.keys, kid); ok {
		return key, nil
	}
	return jwk{}, fmt.Errorf("no key with kid %q", truncate(kid, 64))
}

// getJSON GETs a small JSON document (at most 1 MB).
func getJSON(ctx context.Context, c *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

func fetchJWKS(ctx context.Context, c *http.Client, url string) (map[string]jwk, error) {
	b, err := getJSON(ctx, c, url)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	return parseJWKS(b)
}

// lookupKey finds kid; a token without kid matches a set of one key.
func lookupKey(keys map[string]jwk, kid string) (jwk, bool) {
	if key, ok := keys[kid]; ok {
		return key, true
	}
	if kid == "" && len(keys) == 1 {
		for _, key := range keys {
			return key, true
		}
	}
	return jwk{}, false
}

// parseJWKS reads the signing keys of a JSON Web Key Set (RFC 7517, 8037):
// RSA, EC (P-256, P-384, P-521) and OKP (Ed25519). Keys for encryption
// (use: enc), symmetric keys (oct) and unknown types or curves are skipped;
// a key of a known type with bad parameters fails the set.
func parseJWKS(b []byte) (map[string]jwk, error) {
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			Use string `json:"use"`
			Kid string `json:"kid"`
			Alg string `json:"alg"`
			Crv string `json:"crv"`
			N   string `json:"n"`
			E   string `json:"e"`
			X   string `json:"x"`
			Y   string `json:"y"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("not a JWKS: %w", err)
	}
	keys := map[string]jwk{}
	for _, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		var key jwk
		var err error
		switch k.Kty {
		case "RSA":
			key, err = rsaJWK(k.N, k.E)
		case "EC":
			key, err = ecJWK(k.Crv, k.X, k.Y)
		case "OKP":
			key, err = okpJWK(k.Crv, k.X)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", truncate(k.Kid, 64), err)
		}
		if key.key == nil {
			continue // a curve we do not verify
		}
		if k.Alg != "" {
			// A key that names its algorithm verifies that one only.
			if !slices.Contains(key.algs, k.Alg) {
				return nil, fmt.Errorf("key %q: alg %q does not fit a %s key", truncate(k.Kid, 64), truncate(k.Alg, 16), k.Kty)
			}
			key.algs = []string{k.Alg}
		}
		keys[k.Kid] = key
	}
	if len(keys) == 0 {
		return nil, errors.New("no RSA, EC or OKP signing keys")
	}
	return keys, nil
}

func b64url(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

func rsaJWK(ns, es string) (jwk, error) {
	n, err1 := b64url(ns)
	e, err2 := b64url(es)
	if err1 != nil || err2 != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
		return jwk{}, errors.New("bad n or e")
	}
	ev := int(new(big.Int).SetBytes(e).Int64())
	if ev < 3 {
		return jwk{}, errors.New("bad exponent")
	}
	return jwk{key: &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: ev}, algs: []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}}, nil
}

// ecJWK builds an EC key, checking that the point is on its curve
// (crypto/ecdh refuses any other).
func ecJWK(crv, xs, ys string) (jwk, error) {
	var curve elliptic.Curve
	var check ecdh.Curve
	var alg string
	switch crv {
	case "P-256":
		curve, check, alg = elliptic.P256(), ecdh.P256(), "ES256"
	case "P-384":
		curve, check, alg = elliptic.P384(), ecdh.P384(), "ES384"
	case "P-521":
		curve, check, alg = elliptic.P521(), ecdh.P521(), "ES512"
	default:
		return jwk{}, nil
	}
	size := (curve.Params().BitSize + 7) / 8
	x, err1 := b64url(xs)
	y, err2 := b64url(ys)
	if err1 != nil || err2 != nil || len(x) != size || len(y) != size {
		return jwk{}, fmt.Errorf("bad x or y for %s", crv)
	}
	if _, err := check.NewPublicKey(append(append([]byte{4}, x...), y...)); err != nil {
		return jwk{}, fmt.Errorf("the point is not on %s", crv)
	}
	return jwk{key: &ecdsa.PublicKey{Curve: curve, X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}, algs: []string{alg}}, nil
}

func okpJWK(crv, xs string) (jwk, error) {
	if crv != "Ed25519" {
		return jwk{}, nil // X25519 is for key agreement, Ed448 unsupported
	}
	x, err := b64url(xs)
	if err != nil || len(x) != ed25519.PublicKeySize {
		return jwk{}, errors.New("bad x for Ed25519")
	}
	return jwk{key: ed25519.PublicKey(x), algs: []string{"EdDSA"}}, nil
}
