package hub

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/changecast/changecast/internal/testkit"
)

// webhookApp is an app deciding identities, as docs/auth.md's example
// does: by the bearer token or the session cookie.
type webhookApp struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls map[string]int // by credential
	hubs  []string
}

func newWebhookApp(t *testing.T) *webhookApp {
	a := &webhookApp{calls: map[string]int{}}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Hub string }
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &body)
		cred := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if c, err := r.Cookie("session"); err == nil {
			cred = "cookie:" + c.Value
		}
		a.mu.Lock()
		a.calls[cred]++
		a.hubs = append(a.hubs, body.Hub)
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch cred {
		case "alice":
			_, _ = io.WriteString(w, `{"userId":"alice","groups":["vip"],"claims":{"tid":"t1"},"ttl":60}`)
		case "cookie:carol":
			_, _ = io.WriteString(w, `{"userId":"carol","claims":{"tid":["t2","t3"]}}`)
		case "short-ttl":
			_, _ = io.WriteString(w, `{"userId":"dave","ttl":0.001}`)
		case "bob":
			w.WriteHeader(http.StatusForbidden)
		case "slow":
			<-r.Context().Done()
		case "junk":
			_, _ = io.WriteString(w, `<html>`)
		case "no-user":
			_, _ = io.WriteString(w, `{"groups":["vip"]}`)
		case "bad-group":
			_, _ = io.WriteString(w, `{"userId":"eve","groups":["vip", " "]}`)
		case "bad-ttl":
			_, _ = io.WriteString(w, `{"userId":"eve","ttl":"soon"}`)
		case "huge":
			_, _ = io.WriteString(w, `{"userId":"eve","claims":{"x":"`+strings.Repeat("x", maxWebhookAnswer)+`"}}`)
		case "oops":
			w.WriteHeader(http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *webhookApp) callsOf(cred string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls[cred]
}

func webhookNegotiator(t *testing.T, w WebhookAuth, anonymous bool) (string, *fakeService) {
	t.Helper()
	return serveNegotiator(t, NegotiateAuth{Anonymous: anonymous, Webhook: &w}, []string{"tenant-{claims.tid}", "all"})
}

// Issue 17, item 4: the app's webhook decides users and groups; its 401
// and 403 are passed on, its timeout is 503 and its malformed answers 502.
func TestWebhookDecidesIdentity(t *testing.T) {
	t.Parallel()
	app := newWebhookApp(t)
	base, svc := webhookNegotiator(t, WebhookAuth{URL: app.srv.URL, Timeout: 300 * time.Millisecond}, false)

	if code, user := negotiateStatus(t, base, "alice", nil); code != 200 || user != "alice" {
		t.Fatalf("alice: %d %q", code, user)
	}
	if code, user := negotiateStatus(t, base, "", map[string]string{"Cookie": "session=carol"}); code != 200 || user != "carol" {
		t.Fatalf("carol by cookie: %d %q", code, user)
	}
	svc.mu.Lock()
	joins := append([]string(nil), svc.joins...)
	svc.mu.Unlock()
	want := []string{"chat/vip/alice/0s", "chat/tenant-t1/alice/0s", "chat/all/alice/0s",
		"chat/tenant-t2/carol/0s", "chat/tenant-t3/carol/0s", "chat/all/carol/0s"}
	if !reflect.DeepEqual(joins, want) {
		t.Fatalf("joins %v, want %v", joins, want)
	}
	app.mu.Lock()
	if app.hubs[0] != "chat" {
		t.Errorf("the webhook got hub %q", app.hubs[0])
	}
	app.mu.Unlock()

	for cred, wantCode := range map[string]int{
		"bob": 403, "nobody": 401, "": 401,
		"junk": 502, "no-user": 502, "bad-group": 502, "bad-ttl": 502, "huge": 502, "oops": 502,
	} {
		code, _, body := do(t, "POST", base+"/api/negotiate?hub=chat", cred, nil, nil)
		if code != wantCode {
			t.Errorf("%q: %d %s, want %d", cred, code, body, wantCode)
		}
		if code == 502 && strings.Contains(string(body), cred) {
			t.Errorf("%q: the reason reached the caller: %s", cred, body)
		}
	}
	start := time.Now()
	if code, _ := negotiateStatus(t, base, "slow", nil); code != 503 {
		t.Errorf("slow: %d, want 503", code)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the timeout took %v", d)
	}
	// Without a cache, the app is asked every time.
	negotiateStatus(t, base, "alice", nil)
	if n := app.callsOf("alice"); n != 2 {
		t.Errorf("alice asked %d times, want 2", n)
	}
}

// Issue 17, item 4: with cacheTTL, an answer serves the same credential
// again (no more than its ttl); other credentials are asked for.
func TestWebhookCache(t *testing.T) {
	t.Parallel()
	app := newWebhookApp(t)
	base, _ := webhookNegotiator(t, WebhookAuth{URL: app.srv.URL, CacheTTL: time.Hour}, false)
	for range 3 {
		if code, user := negotiateStatus(t, base, "alice", nil); code != 200 || user != "alice" {
			t.Fatalf("alice: %d %q", code, user)
		}
	}
	if n := app.callsOf("alice"); n != 1 {
		t.Errorf("alice asked %d times, want 1", n)
	}
	// Refusals are not cached: the app is asked again.
	negotiateStatus(t, base, "bob", nil)
	negotiateStatus(t, base, "bob", nil)
	if n := app.callsOf("bob"); n != 2 {
		t.Errorf("bob asked %d times, want 2", n)
	}
	// An answer's ttl shortens the cache (1 ms here).
	testkit.Until(t, 5*time.Second, "the app asked again once a 1 ms answer expired", func() bool {
		if code, user := negotiateStatus(t, base, "short-ttl", nil); code != 200 || user != "dave" {
			t.Fatalf("short ttl: %d %q", code, user)
		}
		return app.callsOf("short-ttl") >= 2
	})
}

// With anonymous allowed, a caller without credentials is not sent to
// the webhook; one with credentials is, and a refusal stands.
func TestWebhookWithAnonymous(t *testing.T) {
	t.Parallel()
	app := newWebhookApp(t)
	base, _ := webhookNegotiator(t, WebhookAuth{URL: app.srv.URL}, true)
	if code, user := negotiateStatus(t, base, "", nil); code != 200 || !strings.HasPrefix(user, "anonymous-") || app.callsOf("") != 0 {
		t.Errorf("anonymous: %d %q, webhook asked %d times", code, user, app.callsOf(""))
	}
	if code, _ := negotiateStatus(t, base, "nobody", nil); code != 401 {
		t.Errorf("refused credential: %d", code)
	}
}

func FuzzParseWebhookAnswer(f *testing.F) {
	f.Add([]byte(`{"userId":"alice","groups":["vip"],"claims":{"tid":"t1"},"ttl":60}`))
	f.Add([]byte(`{"userId":"","ttl":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, ttl, err := parseWebhookAnswer(b)
		if err != nil {
			return
		}
		if id.user == "" || ttl < 0 {
			t.Fatalf("accepted %+v %v", id, ttl)
		}
		for _, g := range id.groups {
			if !validGroup(g) {
				t.Fatalf("accepted group %q", g)
			}
		}
	})
}
