package hub

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Issue 17, item 3: a jwksURL (no discovery) with EC and Ed25519 keys
// verifies ES256, ES512 and EdDSA tokens; before, only RSA keys were read.
func TestJWKSURLModernKeys(t *testing.T) {
	t.Parallel()
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	keys, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		ecJWKJSON("p256", &p256.PublicKey), ecJWKJSON("p521", &p521.PublicKey), edJWKJSON("ed", edPub)}})
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(keys) }))
	defer idp.Close()
	cfg := Config{Hubs: testHubs, Negotiate: NegotiateConfig{Auth: NegotiateAuth{JWT: &JWTAuth{JWKSURL: idp.URL, Issuer: "idp", Audience: "app"}}}}
	n, err := NewNegotiator(cfg, &fakeService{}, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(n.Handler())
	defer srv.Close()
	claims := jwt.MapClaims{"sub": "u", "iss": "idp", "aud": "app", "exp": time.Now().Add(time.Hour).Unix()}
	for name, tok := range map[string]string{
		"ES256": signWith(t, jwt.SigningMethodES256, p256, "p256", claims),
		"ES512": signWith(t, jwt.SigningMethodES512, p521, "p521", claims),
		"EdDSA": signWith(t, jwt.SigningMethodEdDSA, edKey, "ed", claims),
	} {
		if code, _, body := do(t, "POST", srv.URL+"/api/negotiate?hub=chat", tok, nil, nil); code != 200 {
			t.Errorf("%s: %d %s", name, code, body)
		}
	}
}
