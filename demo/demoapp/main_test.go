package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// webFixture lays out a web folder with the files newMux serves, the
// packages standing in for what npm ci installs.
func webFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"index.html": "<!doctype html>",
		"app.js":     "import '@changecast/client';",
		"style.css":  "body{}",
		"node_modules/@microsoft/signalr/dist/browser/signalr.min.js": "var signalR;",
		"node_modules/@changecast/client/package.json":                `{"name":"@changecast/client","files":["index.js","replica.js","lib/","index.d.ts"]}`,
		"node_modules/@changecast/client/index.js":                    "export * from './replica.js';",
		"node_modules/@changecast/client/replica.js":                  "export const x = 1;",
		"node_modules/@changecast/client/lib/more.js":                 "export const y = 2;",
		"node_modules/@changecast/client/unlisted.js":                 "secret",
		"node_modules/@changecast/client/test/replica.test.mjs":       "test",
		"node_modules/@changecast/client/node_modules/dep/index.js":   "dep",
		"node_modules/fast-json-patch/index.mjs":                      "export * from './module/core.mjs';",
		"node_modules/fast-json-patch/module/core.mjs":                "export const applyPatch = 1;",
		"node_modules/fast-json-patch/package.json":                   "{}",
	}
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestRoutes(t *testing.T) {
	a := &app{secret: []byte("a-secret-of-at-least-16-bytes"), cfg: config{NegotiateURL: "http://127.0.0.1:8080/api", Hub: "orders", Tenants: []string{"acme", "globex"}}}
	mux, err := newMux(webFixture(t), a)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()

	get := func(path string) (int, string, string) {
		t.Helper()
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, res.Header.Get("Content-Type"), string(b)
	}
	for path, want := range map[string]string{
		"/":                                       "<!doctype html>",
		"/app.js":                                 "import '@changecast/client';",
		"/vendor/signalr.min.js":                  "var signalR;",
		"/vendor/@changecast/client/index.js":     "export * from './replica.js';",
		"/vendor/@changecast/client/replica.js":   "export const x = 1;",
		"/vendor/@changecast/client/lib/more.js":  "export const y = 2;",
		"/vendor/fast-json-patch/index.mjs":       "export * from './module/core.mjs';",
		"/vendor/fast-json-patch/module/core.mjs": "export const applyPatch = 1;",
	} {
		code, ctype, body := get(path)
		if code != http.StatusOK || body != want {
			t.Errorf("GET %s: %d %q, want 200 %q", path, code, body, want)
		}
		if strings.HasSuffix(path, "js") && !strings.HasPrefix(ctype, "text/javascript") {
			t.Errorf("GET %s: Content-Type %q, want text/javascript (browsers refuse modules otherwise)", path, ctype)
		}
	}
	// Only the page and the packages' published modules are served; the
	// read API of the old page is gone (the page reads changecast's
	// snapshot).
	for _, path := range []string{
		"/vendor/@changecast/client/unlisted.js",
		"/vendor/@changecast/client/package.json",
		"/vendor/@changecast/client/index.d.ts",
		"/vendor/@changecast/client/test/replica.test.mjs",
		"/vendor/@changecast/client/node_modules/dep/index.js",
		"/vendor/@changecast/client/%2e%2e/%2e%2e/fast-json-patch/index.mjs",
		"/vendor/@changecast/client/lib/%2e%2e/unlisted.js",
		"/vendor/fast-json-patch/package.json",
		"/changecast.js",
		"/api/orders",
		"/api/orders/1",
	} {
		if code, _, _ := get(path); code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, code)
		}
	}

	code, _, body := get("/api/config")
	var cfg config
	if code != http.StatusOK || json.Unmarshal([]byte(body), &cfg) != nil || cfg.NegotiateURL != a.cfg.NegotiateURL || cfg.Hub != "orders" {
		t.Errorf("GET /api/config: %d %s", code, body)
	}

	res, err := http.Post(srv.URL+"/api/login", "application/json", strings.NewReader(`{"tenant":"acme"}`))
	if err != nil {
		t.Fatal(err)
	}
	var login struct{ Token, User, Tenant string }
	err = json.NewDecoder(res.Body).Decode(&login)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("POST /api/login: %d %v", res.StatusCode, err)
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(login.Token, claims, func(*jwt.Token) (any, error) { return a.secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuer(Issuer), jwt.WithAudience(Audience), jwt.WithExpirationRequired()); err != nil {
		t.Fatalf("the login token does not verify: %v", err)
	}
	if claims["tid"] != "acme" || claims["sub"] != login.User {
		t.Errorf("login token claims %v, want tid acme and sub %s", claims, login.User)
	}
	res, err = http.Post(srv.URL+"/api/login", "application/json", strings.NewReader(`{"tenant":"../x"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("POST /api/login with a bad tenant: %d, want 400", res.StatusCode)
	}
}

func TestMissingPackages(t *testing.T) {
	dir := webFixture(t)
	if err := os.RemoveAll(filepath.Join(dir, "node_modules", "@changecast")); err != nil {
		t.Fatal(err)
	}
	_, err := newMux(dir, &app{})
	if err == nil || !strings.Contains(err.Error(), "scripts/setup.sh") {
		t.Fatalf("newMux without @changecast/client: %v, want an error naming scripts/setup.sh", err)
	}
}
