package hub

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testIssuer is an OpenID Connect provider run by the test: a discovery
// document and a JWKS on loopback, keys swappable, able to go down.
type testIssuer struct {
	srv     *httptest.Server
	issuer  string // "": the server's URL
	mu      sync.Mutex
	keys    []map[string]string
	down    atomic.Bool
	fetches atomic.Int32 // of the JWKS
}

func newTestIssuer(t *testing.T) *testIssuer {
	ti := &testIssuer{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		if ti.down.Load() {
			http.Error(w, "down", 503)
			return
		}
		iss := ti.srv.URL
		ti.mu.Lock()
		if ti.issuer != "" {
			iss = ti.issuer
		}
		ti.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": ti.srv.URL + "/keys"})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		if ti.down.Load() {
			http.Error(w, "down", 503)
			return
		}
		ti.fetches.Add(1)
		ti.mu.Lock()
		defer ti.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": ti.keys})
	})
	ti.srv = httptest.NewServer(mux)
	t.Cleanup(ti.srv.Close)
	return ti
}

func (ti *testIssuer) setKeys(keys ...map[string]string) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.keys = keys
}

var b64 = base64.RawURLEncoding.EncodeToString

func rsaJWKJSON(kid string, k *rsa.PublicKey) map[string]string {
	return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

func ecJWKJSON(kid string, k *ecdsa.PublicKey) map[string]string {
	size := (k.Curve.Params().BitSize + 7) / 8
	return map[string]string{"kty": "EC", "kid": kid, "crv": k.Curve.Params().Name,
		"x": b64(k.X.FillBytes(make([]byte, size))), "y": b64(k.Y.FillBytes(make([]byte, size)))}
}

func edJWKJSON(kid string, k ed25519.PublicKey) map[string]string {
	return map[string]string{"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64(k)}
}

func signWith(t *testing.T, m jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// negotiateStatus POSTs negotiate with a bearer token and returns the
// status and the user negotiate gave a client token for.
func negotiateStatus(t *testing.T, base, token string, hdr map[string]string) (int, string) {
	t.Helper()
	code, _, body := do(t, "POST", base+"/api/negotiate?hub=chat", token, nil, hdr)
	var n negotiated
	_ = json.Unmarshal(body, &n)
	return code, strings.TrimPrefix(n.AccessToken, "token-for-")
}

// serveNegotiator serves a stand-alone Negotiator for auth on loopback
// (a fakeService stands in for Azure SignalR), with GET /api/snapshot
// answering the Caller Authorize gives, as /snapshot and /changes use it.
func serveNegotiator(t *testing.T, auth NegotiateAuth, groups []string, opts ...Option) (string, *fakeService) {
	t.Helper()
	cfg := Config{Hubs: testHubs, Negotiate: NegotiateConfig{Auth: auth, Groups: groups}}
	svc := &fakeService{}
	n, err := NewNegotiator(cfg, svc, append([]Option{WithLogger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	n.Handle("GET /snapshot", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := n.Authorize(r, r.URL.Query().Get("hub"))
		if err != nil {
			n.Refuse(w, err)
			return
		}
		writeJSON(w, 200, c)
	}))
	srv := httptest.NewServer(n.Handler())
	t.Cleanup(srv.Close)
	return srv.URL, svc
}

func oidcNegotiator(t *testing.T, authority string, opts ...Option) (string, *fakeService) {
	t.Helper()
	return serveNegotiator(t, NegotiateAuth{JWT: &JWTAuth{Authority: authority, Audience: "app"}}, []string{"tenant-{claims.tid}"}, opts...)
}

// ecKey gives the issuer one P-256 key, kid "k".
func (ti *testIssuer) ecKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ti.setKeys(ecJWKJSON("k", &k.PublicKey))
	return k
}

// Issue 17, items 2 and 3: an OpenID Connect provider's discovery gives
// the keys and the issuer; tokens signed with RSA, PS, EC and Ed25519
// keys are accepted, and every wrong token is 401.
func TestNegotiateOIDCAuthority(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	idp := newTestIssuer(t)
	rs256Only := rsaJWKJSON("rs256-only", &rsaKey.PublicKey)
	rs256Only["alg"] = "RS256"
	idp.setKeys(rs256Only, rsaJWKJSON("rsa", &rsaKey.PublicKey), ecJWKJSON("p256", &p256.PublicKey), ecJWKJSON("p384", &p384.PublicKey), edJWKJSON("ed", edPub))
	base, svc := oidcNegotiator(t, idp.srv.URL)

	claims := func(user string, edit func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"sub": user, "tid": "t1", "iss": idp.srv.URL, "aud": "app", "exp": time.Now().Add(time.Hour).Unix()}
		if edit != nil {
			edit(c)
		}
		return c
	}
	for name, tok := range map[string]string{
		"ES256": signWith(t, jwt.SigningMethodES256, p256, "p256", claims("es256", nil)),
		"ES384": signWith(t, jwt.SigningMethodES384, p384, "p384", claims("es384", nil)),
		"EdDSA": signWith(t, jwt.SigningMethodEdDSA, edKey, "ed", claims("eddsa", nil)),
		"RS256": signWith(t, jwt.SigningMethodRS256, rsaKey, "rsa", claims("rs256", nil)),
		"PS256": signWith(t, jwt.SigningMethodPS256, rsaKey, "rsa", claims("ps256", nil)),
	} {
		if code, user := negotiateStatus(t, base, tok, nil); code != 200 || user != strings.ToLower(name) {
			t.Errorf("%s: %d %q", name, code, user)
		}
	}
	svc.mu.Lock()
	if len(svc.joins) != 5 || !strings.HasPrefix(svc.joins[0], "chat/tenant-t1/") {
		t.Errorf("joins %v", svc.joins)
	}
	svc.mu.Unlock()

	// The RSA key's public bytes as an HMAC secret: key confusion.
	pubDER := rsaKey.N.Bytes()
	for name, tok := range map[string]string{
		"wrong audience":         signWith(t, jwt.SigningMethodES256, p256, "p256", claims("u", func(c jwt.MapClaims) { c["aud"] = "other-app" })),
		"wrong issuer":           signWith(t, jwt.SigningMethodES256, p256, "p256", claims("u", func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })),
		"no issuer":              signWith(t, jwt.SigningMethodES256, p256, "p256", claims("u", func(c jwt.MapClaims) { delete(c, "iss") })),
		"expired":                signWith(t, jwt.SigningMethodEdDSA, edKey, "ed", claims("u", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() })),
		"key not in the set":     signWith(t, jwt.SigningMethodES256, stranger, "stranger", claims("u", nil)),
		"other key, known kid":   signWith(t, jwt.SigningMethodES256, stranger, "p256", claims("u", nil)),
		"alg not the key's":      signWith(t, jwt.SigningMethodES384, p384, "p256", claims("u", nil)),
		"PS256 for an RS256 key": signWith(t, jwt.SigningMethodPS256, rsaKey, "rs256-only", claims("u", nil)),
		"HS256 with the pub key": signWith(t, jwt.SigningMethodHS256, pubDER, "rsa", claims("u", nil)),
		"none":                   signWith(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "rsa", claims("u", nil)),
	} {
		if code, _ := negotiateStatus(t, base, tok, nil); code != 401 {
			t.Errorf("%s: %d, want 401", name, code)
		}
	}
	// Unknown kids were asked for, but the keys are fetched at most once
	// a minute.
	if n := idp.fetches.Load(); n != 1 {
		t.Errorf("JWKS fetched %d times, want 1", n)
	}
	// The provider goes down: known keys keep working.
	idp.down.Store(true)
	if code, _ := negotiateStatus(t, base, signWith(t, jwt.SigningMethodES256, p256, "p256", claims("still", nil)), nil); code != 200 {
		t.Errorf("provider down: %d", code)
	}
}

// Issue 17, item 2: a rotated key is picked up (a refetch on an unknown
// kid), and the keys of a provider that went down keep serving.
func TestNegotiateOIDCKeyRotation(t *testing.T) {
	t.Parallel()
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, k2, _ := ed25519.GenerateKey(rand.Reader)
	idp := newTestIssuer(t)
	idp.setKeys(ecJWKJSON("k1", &k1.PublicKey))
	base, _ := oidcNegotiator(t, idp.srv.URL, func(o *options) { o.jwksRefetch = 0 })
	claims := jwt.MapClaims{"sub": "u", "iss": idp.srv.URL, "aud": "app", "exp": time.Now().Add(time.Hour).Unix()}
	if code, _ := negotiateStatus(t, base, signWith(t, jwt.SigningMethodES256, k1, "k1", claims), nil); code != 200 {
		t.Fatalf("k1: %d", code)
	}
	idp.setKeys(edJWKJSON("k2", k2.Public().(ed25519.PublicKey)))
	if code, _ := negotiateStatus(t, base, signWith(t, jwt.SigningMethodEdDSA, k2, "k2", claims), nil); code != 200 {
		t.Fatalf("rotated k2: %d", code)
	}
	// k1 left the set with that fetch.
	if code, _ := negotiateStatus(t, base, signWith(t, jwt.SigningMethodES256, k1, "k1", claims), nil); code != 401 {
		t.Fatalf("retired k1: %d", code)
	}
	// Down: a refetch fails (503: retry, not sign in again), the cached
	// k2 still serves.
	idp.down.Store(true)
	if code, _ := negotiateStatus(t, base, signWith(t, jwt.SigningMethodES256, k1, "k1", claims), nil); code != 503 {
		t.Fatalf("unknown kid while down: %d, want 503", code)
	}
	if code, _ := negotiateStatus(t, base, signWith(t, jwt.SigningMethodEdDSA, k2, "k2", claims), nil); code != 200 {
		t.Fatalf("k2 while down: %d", code)
	}
}

// A provider down before any key was fetched: 503, and the keys once it
// is back.
func TestNegotiateOIDCProviderDownAtStart(t *testing.T) {
	t.Parallel()
	idp := newTestIssuer(t)
	k := idp.ecKey(t)
	idp.down.Store(true)
	base, _ := oidcNegotiator(t, idp.srv.URL, func(o *options) { o.jwksRefetch = 0 })
	tok := signWith(t, jwt.SigningMethodES256, k, "k", jwt.MapClaims{"sub": "u", "iss": idp.srv.URL, "aud": "app", "exp": time.Now().Add(time.Hour).Unix()})
	if code, _ := negotiateStatus(t, base, tok, nil); code != 503 {
		t.Fatalf("down: %d, want 503", code)
	}
	idp.down.Store(false)
	if code, _ := negotiateStatus(t, base, tok, nil); code != 200 {
		t.Fatalf("back: %d", code)
	}
}

// Issue 17, item 2: Entra ID's multi-tenant issuer names {tenantid}; a
// token must carry its own tenant's issuer.
func TestNegotiateOIDCTenantIssuer(t *testing.T) {
	t.Parallel()
	idp := newTestIssuer(t)
	k := idp.ecKey(t)
	idp.mu.Lock()
	idp.issuer = idp.srv.URL + "/{tenantid}/v2.0"
	idp.mu.Unlock()
	base, _ := oidcNegotiator(t, idp.srv.URL)
	tok := func(iss, tid string) string {
		c := jwt.MapClaims{"sub": "u", "iss": iss, "aud": "app", "exp": time.Now().Add(time.Hour).Unix()}
		if tid != "" {
			c["tid"] = tid
		}
		return signWith(t, jwt.SigningMethodES256, k, "k", c)
	}
	for name, tc := range map[string]struct {
		tok  string
		code int
	}{
		"own tenant":     {tok(idp.srv.URL+"/t1/v2.0", "t1"), 200},
		"other tenant":   {tok(idp.srv.URL+"/t1/v2.0", "t2"), 401},
		"no tid":         {tok(idp.srv.URL+"/t1/v2.0", ""), 401},
		"template as is": {tok(idp.srv.URL+"/{tenantid}/v2.0", "{tenantid}"), 401},
	} {
		if code, _ := negotiateStatus(t, base, tc.tok, nil); code != tc.code {
			t.Errorf("%s: %d, want %d", name, code, tc.code)
		}
	}
}

func TestParseDiscovery(t *testing.T) {
	for doc, ok := range map[string]bool{
		`{"issuer":"https://idp","jwks_uri":"https://idp/keys"}`:      true,
		`{"issuer":"https://idp","jwks_uri":"http://127.0.0.1/keys"}`: true,
		`{"issuer":"https://idp","jwks_uri":"http://idp/keys"}`:       false,
		`{"jwks_uri":"https://idp/keys"}`:                             false,
		`{"issuer":"https://idp"}`:                                    false,
		`[]`:                                                          false,
	} {
		if _, _, err := parseDiscovery([]byte(doc)); (err == nil) != ok {
			t.Errorf("%s: %v", doc, err)
		}
	}
}

func FuzzParseDiscovery(f *testing.F) {
	f.Add([]byte(`{"issuer":"https://idp","jwks_uri":"https://idp/keys"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		iss, uri, err := parseDiscovery(b)
		if err == nil && (iss == "" || !jwksURLOK(uri)) {
			t.Fatalf("accepted %q %q", iss, uri)
		}
	})
}

func FuzzParseJWKS(f *testing.F) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	b, _ := json.Marshal(map[string]any{"keys": []map[string]string{ecJWKJSON("a", &p256.PublicKey), edJWKJSON("b", edPub)}})
	f.Add(b)
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := parseJWKS(b)
		if err != nil {
			return
		}
		for kid, k := range keys {
			if k.key == nil || len(k.algs) == 0 {
				t.Fatalf("key %q without key or algs", kid)
			}
			for _, a := range k.algs {
				if strings.HasPrefix(a, "HS") || a == "none" {
					t.Fatalf("key %q verifies %s", kid, a)
				}
			}
		}
	})
}
