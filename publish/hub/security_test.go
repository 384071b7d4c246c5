package hub

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/publish/signalr"
)

// Item 4: without configured origins only loopback pages may call the hub
// from a browser.
func TestCORSDefaultsToLoopback(t *testing.T) {
	t.Parallel()
	h := startHub(t, anonCfg())
	for origin, allowed := range map[string]bool{
		"http://localhost:5173":   true,
		"http://127.0.0.1:3000":   true,
		"https://[::1]:8443":      true,
		"http://evil.example":     false,
		"http://localhost.evil":   false,
		"http://127.0.0.1.nip.io": false,
		"null":                    false,
	} {
		code, hdr, _ := do(t, "OPTIONS", h.NegotiateURL(), "", nil, map[string]string{
			"Origin": origin, "Access-Control-Request-Method": "POST"})
		if got := hdr.Get("Access-Control-Allow-Origin") == origin; got != allowed || (allowed && code != 204) {
			t.Errorf("%s: %d, allowed %v, want %v", origin, code, got, allowed)
		}
	}
}

// Item 4: the WebSocket upgrade checks the Origin against the CORS
// settings; non-browser clients (no Origin) stay allowed.
func TestWebSocketOriginIsChecked(t *testing.T) {
	t.Parallel()
	cfg := anonCfg()
	cfg.CORSOrigins = []string{"http://app.example:3000"}
	h := startHub(t, cfg)
	n := h.appNegotiate(t, "chat", "")
	for origin, want := range map[string]int{
		"":                        101,
		"http://app.example:3000": 101,
		"http://APP.example:3000": 101,
		"http://evil.example":     403,
		"http://localhost:3000":   403, // origins are configured: loopback is not implied
		"null":                    403,
	} {
		hdr := http.Header{}
		if origin != "" {
			hdr.Set("Origin", origin)
		}
		if got := dialStatus(t, n, clientNegotiate(t, n).ConnectionToken, hdr); got != want {
			t.Errorf("origin %q: %d, want %d", origin, got, want)
		}
	}
	// Default settings: loopback pages only.
	h2 := startHub(t, anonCfg())
	n2 := h2.appNegotiate(t, "chat", "")
	if got := dialStatus(t, n2, clientNegotiate(t, n2).ConnectionToken, http.Header{"Origin": {"http://evil.example"}}); got != 403 {
		t.Errorf("default settings, foreign origin: %d", got)
	}
	if got := dialStatus(t, n2, clientNegotiate(t, n2).ConnectionToken, http.Header{"Origin": {"http://localhost:8081"}}); got != 101 {
		t.Errorf("default settings, loopback origin: %d", got)
	}
}

// Item 4: with PublicURL set, negotiate hands out that endpoint and tokens
// must carry it, whatever Host and X-Forwarded-Proto requests claim.
func TestPublicURL(t *testing.T) {
	t.Parallel()
	cfg := anonCfg()
	cfg.PublicURL = "https://hub.example"
	h := startHub(t, cfg)
	local := "http://" + h.Addr().String()
	if h.Endpoint() != "https://hub.example" || !strings.Contains(h.ConnectionString(), "Endpoint=https://hub.example;") {
		t.Fatalf("endpoint %s, connection string %s", h.Endpoint(), h.ConnectionString())
	}
	code, body := doAs(t, "evil.example", "http", "POST", local+"/api/negotiate?hub=chat", "")
	var n negotiated
	if code != 200 || json.Unmarshal(body, &n) != nil || n.URL != "https://hub.example/client/?hub=chat" {
		t.Fatalf("negotiate: %d %s", code, body)
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(n.AccessToken, claims); err != nil || claims["aud"] != n.URL {
		t.Fatalf("token aud %v (%v)", claims["aud"], err)
	}
	negURL := local + "/client/negotiate?hub=chat&negotiateVersion=1"
	if code, _, body := do(t, "POST", negURL, n.AccessToken, nil, nil); code != 200 {
		t.Fatalf("client negotiate with the public audience: %d %s", code, body)
	}
	forHost, _ := signalr.SignAccessToken(h.AccessKey(), local+"/client/?hub=chat", "", time.Hour, time.Now())
	if code, _, _ := do(t, "POST", negURL, forHost, nil, nil); code != 401 {
		t.Fatalf("token for the request's Host: %d, want 401", code)
	}
	forEvil, _ := signalr.SignAccessToken(h.AccessKey(), "http://evil.example/client/?hub=chat", "", time.Hour, time.Now())
	if code, _ := doAs(t, "evil.example", "http", "POST", negURL, forEvil); code != 401 {
		t.Fatalf("token for a forged Host: %d, want 401", code)
	}
	restTok, _ := signalr.SignAccessToken(h.AccessKey(), "https://hub.example/api/hubs/chat/:send", "", time.Minute, time.Now())
	if code, _, body := do(t, "POST", local+"/api/hubs/chat/:send?api-version=2022-06-01", restTok, []byte(`{"target":"x"}`), nil); code != 202 {
		t.Fatalf("REST with the public audience: %d %s", code, body)
	}
	// The hub's own origin is allowed even with no CORS origins listed.
	code, hdr, _ := do(t, "OPTIONS", local+"/api/negotiate", "", nil, map[string]string{"Origin": "https://hub.example", "Access-Control-Request-Method": "POST"})
	if code != 204 || hdr.Get("Access-Control-Allow-Origin") != "https://hub.example" {
		t.Fatalf("own origin: %d %v", code, hdr)
	}
}

// Item 8: access-key tokens are issued for exactly this endpoint, path,
// hub and user; their lifetimes are bounded.
func TestAccessTokenAudienceIsStrict(t *testing.T) {
	t.Parallel()
	h := startHub(t, anonCfg())
	base := h.Endpoint()
	port := base[strings.LastIndexByte(base, ':')+1:]
	sign := func(aud, user string, ttl time.Duration) string {
		tok, err := signalr.SignAccessToken(h.AccessKey(), aud, user, ttl, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	negURL := base + "/client/negotiate?hub=chat&negotiateVersion=1"
	for _, tc := range []struct {
		name, aud string
		ttl       time.Duration
		want      int
	}{
		{"exact", base + "/client/?hub=chat", time.Hour, 200},
		{"no port (.NET SDK)", "http://127.0.0.1/client/?hub=chat", time.Hour, 200},
		{"hub in another case", base + "/client/?hub=CHAT", time.Hour, 200},
		{"23 h", base + "/client/?hub=chat", 23 * time.Hour, 200},
		{"other port", "http://127.0.0.1:1/client/?hub=chat", time.Hour, 401},
		{"loopback alias", "http://localhost:" + port + "/client/?hub=chat", time.Hour, 401},
		{"path case", base + "/CLIENT/?hub=chat", time.Hour, 401},
		{"escaped path", base + "/%63lient/?hub=chat", time.Hour, 401},
		{"user info", "http://x@127.0.0.1:" + port + "/client/?hub=chat", time.Hour, 401},
		{"fragment", base + "/client/?hub=chat#x", time.Hour, 401},
		{"empty fragment", base + "/client/?hub=chat#", time.Hour, 401},
		{"no hub", base + "/client/", time.Hour, 401},
		{"other hub", base + "/client/?hub=orders", time.Hour, 401},
		{"two hubs", base + "/client/?hub=chat&hub=orders", time.Hour, 401},
		{"25 h", base + "/client/?hub=chat", 25 * time.Hour, 401},
		{"100 years", base + "/client/?hub=chat", 100 * 365 * 24 * time.Hour, 401},
	} {
		code, _, body := do(t, "POST", negURL, sign(tc.aud, "u", tc.ttl), nil, nil)
		if code != tc.want {
			t.Errorf("client token %s: %d %s, want %d", tc.name, code, body, tc.want)
		}
		if code == 401 && !strings.Contains(string(body), `"message":"invalid token"`) {
			t.Errorf("401 body %s says more than invalid token", body)
		}
	}
	restPath := "/api/hubs/chat/users/Bob/:send"
	for _, tc := range []struct {
		name, aud string
		ttl       time.Duration
		want      int
	}{
		{"exact", base + restPath, time.Hour, 202},
		{"id in another case", base + "/api/hubs/chat/users/bob/:send", time.Minute, 401},
		{"escaped action", base + "/api/hubs/chat/users/Bob/%3Asend", time.Minute, 401},
		{"2 h", base + restPath, 2 * time.Hour, 401},
	} {
		code, _, body := do(t, "POST", base+restPath+"?api-version=2022-06-01", sign(tc.aud, "", tc.ttl), []byte(`{"target":"x"}`), nil)
		if code != tc.want {
			t.Errorf("REST token %s: %d %s, want %d", tc.name, code, body, tc.want)
		}
	}
	// :generateToken: lifetimes are bounded, never overflow.
	for minutes, want := range map[string]int{"99999999999999": 400, "9223372036854775807": 400, "1441": 400, "0": 400, "1440": 200} {
		code, _, body := h.restCall(t, "POST", "/api/hubs/chat/:generateToken?api-version=2023-07-01&minutesToExpire="+minutes, "")
		if code != want {
			t.Errorf("minutesToExpire=%s: %d %s", minutes, code, body)
			continue
		}
		if code == 200 {
			var gt struct{ Token string }
			_ = json.Unmarshal(body, &gt)
			claims := jwt.MapClaims{}
			_, _, _ = jwt.NewParser().ParseUnverified(gt.Token, claims)
			exp, _ := claims.GetExpirationTime()
			if exp == nil || time.Until(exp.Time) < 23*time.Hour || time.Until(exp.Time) > 24*time.Hour {
				t.Errorf("minutesToExpire=%s: exp %v", minutes, exp)
			}
		}
	}
}

// Item 9: a negotiated connection is its user's: another user's token
// cannot take it, and the owner still can.
func TestConnectionBelongsToItsUser(t *testing.T) {
	t.Parallel()
	h := startHub(t, anonCfg())
	alice := clientToken(t, h, "chat", "alice", time.Hour)
	bob := clientToken(t, h, "chat", "bob", time.Hour)
	cn := clientNegotiate(t, alice)
	if got := dialStatus(t, bob, cn.ConnectionToken, nil); got != 403 {
		t.Fatalf("bob on alice's connection: %d, want 403", got)
	}
	c := dial(t, alice, cn)
	if ok, err := h.rest.UserExists(context.Background(), "chat", "alice"); !ok || err != nil {
		t.Fatalf("alice not connected: %v %v", ok, err)
	}
	if ok, _ := h.rest.UserExists(context.Background(), "chat", "bob"); ok {
		t.Fatal("bob connected")
	}
	_ = c
}

// Item 7: access keys are at least 32 bytes.
func TestShortAccessKeyIsRefused(t *testing.T) {
	t.Parallel()
	for key, ok := range map[string]bool{"abc": false, strings.Repeat("k", 31): false, strings.Repeat("k", 32): true} {
		cfg := anonCfg()
		cfg.AccessKey = key
		_, err := New(cfg)
		if (err == nil) != ok {
			t.Errorf("key of %d bytes: %v", len(key), err)
		}
	}
}

// Item 5: a JWKS needs an issuer and an audience, and comes over https
// (or from a loopback host).
func TestJWKSConfigIsChecked(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "jwks.json")
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	if err := os.WriteFile(file, []byte(jwksJSON("k1", &key.PublicKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		j      JWTAuth
		ok     bool
		fields []string
	}{
		"file without iss and aud": {JWTAuth{JWKSFile: file}, false, []string{"Issuer", "Audience"}},
		"url without aud":          {JWTAuth{JWKSURL: "https://idp.example/keys", Issuer: "i"}, false, []string{"Audience"}},
		"http url":                 {JWTAuth{JWKSURL: "http://idp.example/keys", Issuer: "i", Audience: "a"}, false, []string{"JWKSURL"}},
		"http loopback url":        {JWTAuth{JWKSURL: "http://127.0.0.1:9/keys", Issuer: "i", Audience: "a"}, true, nil},
		"https url":                {JWTAuth{JWKSURL: "https://idp.example/keys", Issuer: "i", Audience: "a"}, true, nil},
		"file":                     {JWTAuth{JWKSFile: file, Issuer: "i", Audience: "a"}, true, nil},
		"hs256 without iss or aud": {JWTAuth{HS256Secret: testSecret}, true, nil},
	} {
		j := tc.j
		_, err := New(Config{Hubs: testHubs, Negotiate: NegotiateConfig{Auth: NegotiateAuth{JWT: &j}}})
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", name, err)
		}
		for _, f := range tc.fields {
			if err == nil || !strings.Contains(err.Error(), "JWT."+f) {
				t.Errorf("%s: %v does not name %s", name, err, f)
			}
		}
	}
}

// Item 5: a JWKS fetch in flight (a slow identity provider) does not hold
// up negotiates whose key is already known.
func TestJWKSFetchDoesNotBlockKnownKeys(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	var fetches atomic.Int32
	release := make(chan struct{})
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fetches.Add(1) > 1 {
			select { // the second fetch hangs until the test is done
			case <-release:
			case <-r.Context().Done():
			}
		}
		_, _ = w.Write([]byte(jwksJSON("k1", &key.PublicKey)))
	}))
	defer idp.Close()
	sign := func(kid string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"sub": "r", "iss": "idp", "aud": "app", "exp": time.Now().Add(time.Hour).Unix()})
		tok.Header["kid"] = kid
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	h := startHub(t, Config{Hubs: []string{"h"}, Negotiate: NegotiateConfig{Auth: NegotiateAuth{JWT: &JWTAuth{JWKSURL: idp.URL, Issuer: "idp", Audience: "app"}}}},
		func(o *options) { o.jwksRefetch = 0 })
	u := h.NegotiateURL() + "?hub=h"
	if code, _, body := do(t, "POST", u, sign("k1"), nil, nil); code != 200 {
		t.Fatalf("first negotiate: %d %s", code, body)
	}
	// An unknown kid starts a second fetch, which hangs.
	unknown := testkit.Go(t, func() error {
		code, _, _ := do(t, "POST", u, sign("k2"), nil, nil)
		if code != 401 {
			return fmt.Errorf("unknown kid: %d", code)
		}
		return nil
	})
	testkit.Until(t, 5*time.Second, "the second JWKS fetch", func() bool { return fetches.Load() == 2 })
	client := &http.Client{Timeout: 3 * time.Second}
	req, _ := http.NewRequest("POST", u, nil)
	req.Header.Set("Authorization", "Bearer "+sign("k1"))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("a known key waited for the fetch: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("known key during a fetch: %d", resp.StatusCode)
	}
	close(release)
	if err := testkit.Recv(t, unknown, 10*time.Second, "the unknown kid's negotiate"); err != nil {
		t.Fatal(err)
	}
}

// doAs is do with a forged Host and X-Forwarded-Proto.
func doAs(t *testing.T, host, proto, method, url, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	req.Header.Set("X-Forwarded-Proto", proto)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}
