package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/changecast/changecast/internal/testkit"
)

// runHub runs `changecast hub args` until it prints its negotiate line,
// and returns what it printed; it stops it when the test ends.
func runHub(t *testing.T, args ...string) (stdout, stderr *testkit.Buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr = &testkit.Buffer{}, &testkit.Buffer{}
	done := testkit.Go(t, func() error {
		if code := run(ctx, append([]string{"hub"}, args...), stdout, stderr); code != 0 {
			return fmt.Errorf("exit code %d, stderr %q", code, stderr.String())
		}
		return nil
	})
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	testkit.Until(t, 10*time.Second, "the negotiate line", func() bool { return strings.Contains(stdout.String(), "negotiate: POST ") })
	return stdout, stderr
}

// Item 7: a key of the user's (from the environment, never a flag) is
// never printed nor logged (stdout and the log on stderr, at the -v level,
// after negotiates and refused calls); a generated one is printed, with the
// connection string; short keys are refused.
func TestHubCommandKeys(t *testing.T) {
	key := "k3y-from-the-environment-0123456789abcdef"
	t.Setenv(envHubKey, key)
	out, logs := runHub(t, "-v", "-listen", "127.0.0.1:0", "-hub", "orders", "-hub", "audit")
	if strings.Contains(out.String(), key) || strings.Contains(out.String(), "AccessKey=") {
		t.Fatalf("the key was printed:\n%s", out)
	}
	negURL := regexp.MustCompile(`negotiate: POST (\S+)\?hub=HUB`).FindStringSubmatch(out.String())
	if negURL == nil || !strings.Contains(out.String(), "hubs: orders, audit") {
		t.Fatalf("stdout:\n%s", out)
	}
	for hub, want := range map[string]int{"orders": 200, "audit": 200, "other": 404} {
		resp, err := http.Post(negURL[1]+"?hub="+hub, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("negotiate %s: %d, want %d", hub, resp.StatusCode, want)
		}
	}
	// A REST call with a token signed by another key is refused, and -v
	// logs refused requests: the log below has lines to leak the key in.
	endpoint := strings.TrimSuffix(negURL[1], "/api/negotiate")
	req, _ := http.NewRequest("POST", endpoint+"/api/hubs/orders/:send?api-version=2022-06-01", strings.NewReader(`{"target":"x","arguments":[]}`))
	req.Header.Set("Authorization", "Bearer "+signHS256(t, "not-"+key, endpoint+"/api/hubs/orders/:send"))
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != 401 {
		t.Errorf("REST call signed with another key: %d, want 401", resp.StatusCode)
	}
	testkit.Until(t, 10*time.Second, "the hub to log the refused call", func() bool { return strings.Contains(logs.String(), "401") })
	for _, l := range []*testkit.Buffer{out, logs} {
		if s := l.String(); strings.Contains(s, key) || strings.Contains(s, base64.StdEncoding.EncodeToString([]byte(key))) {
			t.Fatalf("the key was printed or logged:\nstdout:\n%s\nstderr:\n%s", out, logs)
		}
	}

	t.Setenv(envHubKey, "")
	out, _ = runHub(t, "-listen", "127.0.0.1:0", "-hub", "orders")
	if !regexp.MustCompile(`AZURE_SIGNALR_CONNECTION_STRING=Endpoint=\S+;AccessKey=[A-Za-z0-9+/=]{44};`).MatchString(out.String()) {
		t.Fatalf("a generated key is printed with its connection string:\n%s", out)
	}

	for name, tc := range map[string]struct {
		env  string
		args []string
		want string
	}{
		"short key": {"abc", []string{"-hub", "orders"}, "hub.accessKey: is shorter than 32 bytes"},
		"-key flag": {"", []string{"-hub", "orders", "-key", strings.Repeat("k", 40)}, "flag provided but not defined: -key"},
		"no hubs":   {"", nil, "-hub NAME"},
		"bad hub":   {"", []string{"-hub", "9x"}, `hub.hubs[0]: "9x" is not a valid hub name`},
	} {
		t.Setenv(envHubKey, tc.env)
		var stdout, stderr testkit.Buffer
		if code := run(context.Background(), append([]string{"hub", "-listen", "127.0.0.1:0"}, tc.args...), &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%s: exit %d, stderr %q", name, code, stderr.String())
		}
	}
}

// Item 4: `changecast hub` no longer lets any website in: loopback origins
// only, unless a hub config lists others.
func TestHubCommandCORS(t *testing.T) {
	t.Setenv(envHubKey, "")
	out, _ := runHub(t, "-listen", "127.0.0.1:0", "-hub", "orders")
	negURL := regexp.MustCompile(`negotiate: POST (\S+)\?hub=HUB`).FindStringSubmatch(out.String())[1]
	for origin, allowed := range map[string]bool{"http://evil.example": false, "http://localhost:3000": true} {
		req, _ := http.NewRequest("POST", negURL+"?hub=orders", nil)
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Access-Control-Allow-Origin") == origin; got != allowed {
			t.Errorf("%s: allowed %v, want %v", origin, got, allowed)
		}
	}
}

// validateHubConfig runs `changecast config validate` on a config whose
// hub section is hub (YAML, indented under hub:), and returns the exit
// code and stderr.
func validateHubConfig(t *testing.T, hub string) (int, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(`
source: {postgres: {url: "postgres://x/db", tables: [public.orders]}}
mappings: [{collection: public.orders, hub: orders}]
publish: {target: hub}
hub:
`+hub), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr testkit.Buffer
	code := run(context.Background(), []string{"config", "validate", "-c", path}, &stdout, &stderr)
	return code, stderr.String()
}

// Item 5: `config validate` refuses a JWKS without issuer and audience,
// naming both fields, with exit code 2.
func TestConfigValidateJWKSNeedsIssuerAndAudience(t *testing.T) {
	code, stderr := validateHubConfig(t, `  negotiate: {auth: {jwt: {jwksURL: "https://idp.example/keys"}}}
`)
	if code != 2 || !strings.Contains(stderr, "hub.negotiate.auth.jwt.issuer: is required") ||
		!strings.Contains(stderr, "hub.negotiate.auth.jwt.audience: is required") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

// Issue 17: `config validate` names every identity provider field that is
// wrong (a CIDR that does not parse, an http authority on a non-loopback
// host, a webhook without a URL), with exit code 2.
func TestConfigValidateNamesIdentityProviderFields(t *testing.T) {
	code, stderr := validateHubConfig(t, `  negotiate:
    auth:
      jwt: {authority: "http://login.example.com/tenant/v2.0", audience: api://app}
      appService: {trustedProxies: [127.0.0.1/32, "10.0.0.0/99"]}
      proxy: {trustedProxies: []}
      webhook: {timeout: 2s}
`)
	if code != 2 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{
		`hub.negotiate.auth.jwt.authority: "http://login.example.com/tenant/v2.0" is not an https URL`,
		`hub.negotiate.auth.appService.trustedProxies[1]: "10.0.0.0/99" is not a CIDR`,
		`hub.negotiate.auth.proxy.trustedProxies: is required`,
		`hub.negotiate.auth.webhook.url: is required`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "appService.trustedProxies[0]") {
		t.Errorf("a good CIDR is reported: %s", stderr)
	}
	// The same methods, right, validate.
	if code, stderr := validateHubConfig(t, `  negotiate:
    auth:
      jwt: {authority: "https://login.microsoftonline.com/common/v2.0", audience: api://app}
      appService: {trustedProxies: [127.0.0.1/32, "::1"]}
      webhook: {url: "http://app:8080/auth", timeout: 2s, headers: [Authorization, Cookie], cacheTTL: 30s}
`); code != 0 {
		t.Fatalf("good config: exit %d, stderr %q", code, stderr)
	}
}

// Issue 17: the README's identity provider example is a valid hub section,
// with its commented-out methods too.
func TestReadmeIdentityProvidersExampleValidates(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "- **Identity providers**")
	_, rest, ok2 := strings.Cut(rest, "```yaml\n  hub:\n")
	block, _, ok3 := strings.Cut(rest, "  ```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README has no identity providers example")
	}
	var hub strings.Builder
	for _, l := range strings.Split(block, "\n") {
		l = strings.TrimPrefix(l, "  ")
		// Uncomment the alternatives ("# proxy: {...}"), not the prose.
		if t := strings.TrimLeft(l, " "); strings.HasPrefix(t, "# proxy:") || strings.HasPrefix(t, "# webhook:") {
			l = strings.Replace(l, "# ", "", 1)
		}
		hub.WriteString(l + "\n")
	}
	if !strings.Contains(hub.String(), "\n      proxy:") || !strings.Contains(hub.String(), "\n      webhook:") {
		t.Fatalf("the alternatives were not uncommented:\n%s", hub.String())
	}
	if code, stderr := validateHubConfig(t, hub.String()); code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, stderr, hub.String())
	}
}

// signHS256 is an access-key token for aud signed with key.
func signHS256(t *testing.T, key, aud string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"aud": aud, "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
