package hub

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/changecast/changecast/schema/template"
)

func jwksJSON(kid string, k *rsa.PublicKey) string {
	enc := base64.RawURLEncoding.EncodeToString
	return fmt.Sprintf(`{"keys":[{"kty":"EC","kid":"ec"},{"kty":"RSA","use":"sig","kid":%q,"n":%q,"e":%q}]}`,
		kid, enc(k.N.Bytes()), enc(big.NewInt(int64(k.E)).Bytes()))
}

func TestNegotiateRS256JWKS(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	sign := func(k *rsa.PrivateKey, kid string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"sub": "r", "tid": "x", "iss": "idp", "aud": "app", "exp": time.Now().Add(time.Hour).Unix()})
		tok.Header["kid"] = kid
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, []byte(jwksJSON("k1", &key.PublicKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	fetches := 0
	jwksSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches++
		_, _ = w.Write([]byte(jwksJSON("k1", &key.PublicKey)))
	}))
	defer jwksSrv.Close()

	for name, j := range map[string]*JWTAuth{"file": {JWKSFile: file, Issuer: "idp", Audience: "app"}, "url": {JWKSURL: jwksSrv.URL, Issuer: "idp", Audience: "app"}} {
		h := startHub(t, Config{Hubs: []string{"h"}, Negotiate: NegotiateConfig{Auth: NegotiateAuth{JWT: j}, Groups: []string{"tenant-{claims.tid}"}}})
		for _, tc := range []struct {
			what, token string
			want        int
		}{
			{"good", sign(key, "k1"), 200},
			{"unknown kid", sign(key, "k2"), 401},
			{"other key", sign(other, "k1"), 401},
			{"HS256 with the public key as secret", func() string {
				s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "r", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(key.PublicKey.N.Bytes())
				return s
			}(), 401},
		} {
			if code, _, body := do(t, "POST", h.NegotiateURL()+"?hub=h", tc.token, nil, nil); code != tc.want {
				t.Errorf("%s %s: %d %s", name, tc.what, code, body)
			}
		}
	}
	// The URL is fetched on first use; the unknown kid that followed within
	// a minute did not fetch again (a refetch happens at most once a minute,
	// so bad tokens cannot hammer the identity provider).
	if fetches != 1 {
		t.Errorf("JWKS fetched %d times, want 1", fetches)
	}
}

func TestJoinGroups(t *testing.T) {
	var rules []*template.Claims
	for _, s := range []string{"tenant-{claims.tid}", "role-{claims.roles}", "all", "t-{claims.tid}-{claims.missing}"} {
		r, err := template.ParseClaims(s)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r)
	}
	got := joinGroups(rules, map[string]any{"tid": "42", "roles": []any{"admin", "user", "admin", map[string]any{}}})
	want := []string{"tenant-42", "role-admin", "role-user", "all"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if got := joinGroups(rules, nil); !reflect.DeepEqual(got, []string{"all"}) {
		t.Fatalf("anonymous: %v", got)
	}
}

func TestAudienceMatches(t *testing.T) {
	want := endpoint{scheme: "http", host: "127.0.0.1:8080"}.audience("/client")
	want.hub = "chat"
	for aud, ok := range map[string]bool{
		"http://127.0.0.1:8080/client/?hub=chat":  true,
		"http://127.0.0.1/client/?hub=CHAT":       true, // the .NET SDK's form: no port
		"http://localhost/client/?hub=CHAT":       false,
		"http://127.0.0.1:9/client/?hub=chat":     false,
		"http://127.0.0.1:8080/client":            false,
		"http://127.0.0.1:8080/client/?hub=other": false,
		"https://127.0.0.1:8080/client/?hub=chat": false,
		"http://10.0.0.1:8080/client/?hub=chat":   false,
		"http://127.0.0.1:8080/api/?hub=chat":     false,
		"::":                                      false,
	} {
		if audienceMatches(aud, want) != ok {
			t.Errorf("%s: want %v", aud, ok)
		}
	}
}
