package signalr_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/hub"
	"github.com/changecast/changecast/publish/signalr"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startHub runs the built-in hub, the stand-in for Azure SignalR.
func startHub(t *testing.T) *hub.Server {
	t.Helper()
	s, err := hub.New(hub.Config{Listen: "127.0.0.1:0", Hubs: []string{"orders", "chat"}, Negotiate: hub.NegotiateConfig{Auth: hub.NegotiateAuth{Anonymous: true}}}, hub.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	testkit.Run(t, s.Run)
	<-s.Listening()
	return s
}

// client connects a JSON-protocol client to hub h through the app
// negotiate, as the official clients do, and returns it with its user id.
func client(t *testing.T, h *hub.Server, c *signalr.Client, hubName string) (*websocket.Conn, string) {
	t.Helper()
	// The anonymous negotiate hands out a random user; sign our own token
	// instead so the test knows the user id.
	user := "u-" + t.Name()
	tok, err := c.ClientToken(context.Background(), hubName, user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", strings.Replace(c.ClientURL(hubName), "/client/?", "/client/negotiate?", 1)+"&negotiateVersion=1", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var neg struct{ ConnectionToken string }
	err = json.NewDecoder(resp.Body).Decode(&neg)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("negotiate: %d %v", resp.StatusCode, err)
	}
	ws, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(c.ClientURL(hubName), "http")+"&id="+neg.ConnectionToken,
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + tok}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	ws.SetReadLimit(2 << 20)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"protocol":"json","version":1}`+"\x1e")); err != nil {
		t.Fatal(err)
	}
	if _, b, err := ws.Read(ctx); err != nil || string(b) != "{}\x1e" {
		t.Fatalf("handshake: %q %v", b, err)
	}
	return ws, user
}

// nextInvocation reads the next non-ping record.
func nextInvocation(t *testing.T, ws *websocket.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range strings.Split(strings.TrimSuffix(string(b), "\x1e"), "\x1e") {
			if rec != `{"type":6}` {
				return rec
			}
		}
	}
}

func TestPublisherAgainstBuiltInHub(t *testing.T) {
	h := startHub(t)
	p, err := signalr.New(h.ConnectionString())
	if err != nil {
		t.Fatal(err)
	}
	c := p.Client()
	ctx := context.Background()
	ws, user := client(t, h, c, "Orders")
	if err := c.AddUserToGroup(ctx, "ORDERS", "tenant-1", user, time.Minute); err != nil {
		t.Fatal(err)
	}
	if in, err := c.UserInGroup(ctx, "orders", "tenant-1", user); err != nil || !in {
		t.Fatalf("UserInGroup: %v %v", in, err)
	}
	if in, err := c.UserInGroup(ctx, "orders", "tenant-2", user); err != nil || in {
		t.Fatalf("UserInGroup tenant-2: %v %v", in, err)
	}
	payload := `{"source":"s","hub":"orders","group":"tenant-1","changes":[{"op":"upsert","collection":"c","id":"a/b","v":"1","doc":{"x":"\u001e"}}]}`
	for _, tc := range []struct {
		target publish.Audience
		want   bool
	}{
		{publish.Audience{Hub: "orders", Group: "tenant-2", Method: "changes"}, false},
		{publish.Audience{Hub: "orders", Group: "tenant-1", Method: "changes"}, true},
		{publish.Audience{Hub: "orders", User: user, Method: "toUser"}, true},
		{publish.Audience{Hub: "orders", Method: "toAll"}, true},
	} {
		if err := p.Publish(ctx, &publish.Batch{Audience: tc.target, Payload: json.RawMessage(payload)}); err != nil {
			t.Fatalf("%s: %v", tc.target, err)
		}
		if !tc.want {
			continue
		}
		want := `{"type":1,"target":"` + tc.target.Method + `","arguments":[` + payload + `]}`
		t.Logf("expect %s", tc.target)
		if got := nextInvocation(t, ws); got != want {
			t.Fatalf("%s: got %s, want %s", tc.target, got, want)
		}
	}
	if err := c.RemoveUserFromAllGroups(ctx, "orders", user); err != nil {
		t.Fatal(err)
	}
	if in, _ := c.UserInGroup(ctx, "orders", "tenant-1", user); in {
		t.Fatal("still in tenant-1")
	}
	// Over the 1 MB limit: refused as too large before any call.
	big := json.RawMessage(`"` + strings.Repeat("x", signalr.MaxBodyBytes) + `"`)
	if err := p.Publish(ctx, &publish.Batch{Audience: publish.Audience{Hub: "orders", Method: "m"}, Payload: big}); !publish.IsTooLarge(err) {
		t.Fatalf("big batch: %v", err)
	}
	// The hub itself answers 413 when the client's limit is higher.
	p2, _ := signalr.New(h.ConnectionString(), signalr.WithMaxBodyBytes(4<<20))
	if err := p2.Publish(ctx, &publish.Batch{Audience: publish.Audience{Hub: "orders", Method: "m"}, Payload: big}); !publish.IsTooLarge(err) {
		t.Fatalf("big batch past the client check: %v", err)
	}
	// A bad key is refused, permanently.
	bad, _ := signalr.New(strings.Replace(h.ConnectionString(), "AccessKey=", "AccessKey=x", 1))
	if err := bad.Publish(ctx, &publish.Batch{Audience: publish.Audience{Hub: "orders", Method: "m"}, Payload: json.RawMessage(`1`)}); !publish.IsPermanent(err) {
		t.Fatalf("bad key: %v", err)
	}
	if ok, err := c.ConnectionExists(ctx, "orders", "nope"); ok || err != nil {
		t.Fatalf("ConnectionExists(nope): %v %v", ok, err)
	}
}

// fakeService answers every call with the statuses in turn and records
// what it was sent.
func fakeService(t *testing.T, key string, statuses ...int) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		// The access-key JWT: HS256 over the raw key, aud = this URL.
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		claims := jwt.MapClaims{}
		if _, err := jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return []byte(key), nil }, jwt.WithValidMethods([]string{"HS256"})); err != nil {
			t.Errorf("token: %v", err)
		}
		if aud, _ := claims.GetAudience(); len(aud) != 1 || aud[0] != "http://"+r.Host+r.URL.EscapedPath() {
			t.Errorf("aud %v for %s", aud, r.URL.Path)
		}
		if r.URL.Query().Get("api-version") != "2022-06-01" || r.URL.Path != "/api/hubs/chat/groups/g%2F1/:send" && r.URL.RawPath != "/api/hubs/chat/groups/g%2F1/:send" {
			t.Errorf("request %s %s", r.Method, r.URL)
		}
		body, _ := io.ReadAll(r.Body)
		if string(body) != `{"target":"m","arguments":[{"a":1}]}` {
			t.Errorf("body %s", body)
		}
		st := statuses[min(i, len(statuses)-1)]
		switch st {
		case 429:
			w.Header().Set("Retry-After", "7")
		case 503:
			w.Header().Set("Retry-After", time.Now().Add(3*time.Second).UTC().Format(http.TimeFormat))
		case 400:
			w.Header().Set("x-ms-error-code", "Error.Bad")
		}
		w.WriteHeader(st)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestPublisherClassifiesErrors(t *testing.T) {
	const key = "fake-key-0123456789"
	batch := &publish.Batch{Audience: publish.Audience{Hub: "Chat", Group: "g/1", Method: "m"}, Payload: json.RawMessage(`{"a":1}`)}
	for _, tc := range []struct {
		status            int
		retry, large, per bool
		after             time.Duration
	}{
		{202, false, false, false, 0},
		{429, true, false, false, 7 * time.Second},
		{500, true, false, false, 0}, // maybe delivered: retried, clients dedupe
		{502, true, false, false, 0},
		{503, true, false, false, 3 * time.Second},
		{504, true, false, false, 0},
		{413, false, true, true, 0},
		{400, false, false, true, 0},
		{401, false, false, true, 0},
		{404, false, false, true, 0},
	} {
		srv, calls := fakeService(t, key, tc.status)
		p, err := signalr.New("Endpoint=" + srv.URL + ";AccessKey=" + key + ";Version=1.0;")
		if err != nil {
			t.Fatal(err)
		}
		err = p.Publish(context.Background(), batch)
		if calls.Load() != 1 {
			t.Errorf("%d: %d calls, want exactly 1 (no hidden retries)", tc.status, calls.Load())
		}
		if tc.status == 202 {
			if err != nil {
				t.Errorf("202: %v", err)
			}
			continue
		}
		after, retry := publish.RetryAfter(err)
		if retry != tc.retry || publish.IsTooLarge(err) != tc.large || publish.IsPermanent(err) != tc.per {
			t.Errorf("%d: %v: retry %v large %v permanent %v", tc.status, err, retry, publish.IsTooLarge(err), publish.IsPermanent(err))
		}
		if tc.retry && (after < tc.after-time.Second || after > tc.after) {
			t.Errorf("%d: retry after %v, want %v", tc.status, after, tc.after)
		}
		var se *signalr.StatusError
		if !errors.As(err, &se) || se.Status != tc.status {
			t.Errorf("%d: not a StatusError: %v", tc.status, err)
		}
		if tc.status == 400 && se.Code != "Error.Bad" {
			t.Errorf("x-ms-error-code %q", se.Code)
		}
	}
	// A network failure is retryable.
	p, _ := signalr.New("Endpoint=http://127.0.0.1:1;AccessKey=" + key + ";Version=1.0;")
	if _, retry := publish.RetryAfter(p.Publish(context.Background(), batch)); !retry {
		t.Error("connection refused is not retryable")
	}
}

type fakeCred struct{ scopes []string }

func (f *fakeCred) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	f.scopes = o.Scopes
	return azcore.AccessToken{Token: "entra-token", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func TestEntraIDAuth(t *testing.T) {
	var gotAuth, gotPath string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotPath = r.Header.Get("Authorization"), r.URL.Path
		if strings.HasSuffix(r.URL.Path, ":generateToken") {
			_, _ = io.WriteString(w, `{"token":"minted"}`)
			return
		}
		w.WriteHeader(202)
	}))
	defer srv.Close()
	cred := &fakeCred{}
	c, err := signalr.NewClient("Endpoint="+srv.URL+";AuthType=azure;Version=1.0;", signalr.WithCredential(cred))
	if err != nil {
		t.Fatal(err)
	}
	if err := signalr.NewPublisher(c).Publish(context.Background(), &publish.Batch{Audience: publish.Audience{Hub: "h", Method: "m"}, Payload: json.RawMessage(`1`)}); err != nil {
		t.Fatal(err)
	}
	if gotAuth != "Bearer entra-token" || len(cred.scopes) != 1 || cred.scopes[0] != signalr.EntraScope {
		t.Fatalf("auth %q scopes %v", gotAuth, cred.scopes)
	}
	// Without a key the service mints client tokens.
	tok, err := c.ClientToken(context.Background(), "h", "u", time.Hour)
	if err != nil || tok != "minted" || gotPath != "/api/hubs/h/:generateToken" {
		t.Fatalf("client token %q %v at %s", tok, err, gotPath)
	}
}

// TestAccessTokenKeptPerURL: the access-key JWT of a URL is signed once
// and reused for half its lifetime (seconds later it is the same token,
// where signing again would change iat), and each URL has its own.
func TestAccessTokenKeptPerURL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		auth := map[string][]string{}
		rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			auth[r.URL.Path] = append(auth[r.URL.Path], r.Header.Get("Authorization"))
			return &http.Response{StatusCode: 202, Body: io.NopCloser(strings.NewReader("")), Header: http.Header{}, Request: r}, nil
		})
		c, err := signalr.NewClient("Endpoint=http://svc.test;AccessKey="+strings.Repeat("k", 32)+";Version=1.0;",
			signalr.WithHTTPClient(&http.Client{Transport: rt}))
		if err != nil {
			t.Fatal(err)
		}
		p := signalr.NewPublisher(c)
		for i := range 4 {
			g := []string{"a", "b"}[i%2]
			if err := p.Publish(context.Background(), &publish.Batch{Audience: publish.Audience{Hub: "h", Group: g, Method: "m"}, Payload: json.RawMessage(`1`)}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second)
		}
		if len(auth) != 2 {
			t.Fatalf("paths %v", auth)
		}
		seen := map[string]bool{}
		for path, toks := range auth {
			if len(toks) != 2 || toks[0] != toks[1] {
				t.Fatalf("%s: tokens %q, want one used twice", path, toks)
			}
			if seen[toks[0]] {
				t.Fatalf("two URLs share a token")
			}
			seen[toks[0]] = true
		}
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
