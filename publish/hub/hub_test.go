package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/signalr"
)

func invocation(t *testing.T, rec []byte) (target string, args []json.RawMessage) {
	t.Helper()
	var m struct {
		Type      int               `json:"type"`
		Target    string            `json:"target"`
		Arguments []json.RawMessage `json:"arguments"`
	}
	if err := json.Unmarshal(rec, &m); err != nil || m.Type != 1 {
		t.Fatalf("not an invocation: %s", rec)
	}
	return m.Target, m.Arguments
}

func TestNegotiateConnectAndReceive(t *testing.T) {
	t.Parallel()
	h := startHub(t, jwtCfg())
	a := h.connect(t, "Orders", appToken(t, jwt.MapClaims{"sub": "alice", "tid": "a"}))
	b := h.connect(t, "orders", appToken(t, jwt.MapClaims{"sub": "bob", "tid": "b"}))
	ctx := context.Background()

	// The REST publisher (the code that targets Azure) and the in-process
	// publisher both reach the right clients; payloads arrive byte for byte.
	pub := signalr.NewPublisher(h.rest)
	payloadB := json.RawMessage(`{"source":"t","hub":"orders","group":"tenant-b","changes":[{"op":"delete","collection":"c","id":"1","v":"1"}]}`)
	if err := pub.Publish(ctx, &publish.Batch{Audience: publish.Audience{Hub: "orders", Group: "tenant-b", Method: "changes"}, Payload: payloadB}); err != nil {
		t.Fatal(err)
	}
	payloadA := json.RawMessage(`{"x":"for a"}`)
	if err := h.Publisher().Publish(ctx, &publish.Batch{Audience: publish.Audience{Hub: "ORDERS", Group: "tenant-a", Method: "changes"}, Payload: payloadA}); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, &publish.Batch{Audience: publish.Audience{Hub: "orders", Group: "everyone", Method: "all"}, Payload: json.RawMessage(`1`)}); err != nil {
		t.Fatal(err)
	}
	if err := h.Publisher().Publish(ctx, &publish.Batch{Audience: publish.Audience{Hub: "orders", User: "bob", Method: "mine"}, Payload: json.RawMessage(`2`)}); err != nil {
		t.Fatal(err)
	}
	// A payload not made by the pipeline's encoders is checked: a broken
	// one is refused for good.
	if err := h.Publisher().Publish(ctx, &publish.Batch{Audience: publish.Audience{Hub: "orders", Method: "all"}, Payload: json.RawMessage(`{"x":`)}); !publish.IsPermanent(err) {
		t.Fatalf("a broken payload: %v, want a permanent error", err)
	}

	// a never got tenant-b's batch: it was sent first, so it would be first.
	tgt, args := invocation(t, a.nextNonPing(5*time.Second))
	if tgt != "changes" || len(args) != 1 || string(args[0]) != string(payloadA) {
		t.Fatalf("a got %s %s", tgt, args)
	}
	if tgt, _ := invocation(t, a.nextNonPing(5*time.Second)); tgt != "all" {
		t.Fatalf("a got %s, want all", tgt)
	}
	tgt, args = invocation(t, b.nextNonPing(5*time.Second))
	if tgt != "changes" || string(args[0]) != string(payloadB) {
		t.Fatalf("b got %s %s", tgt, args)
	}
	for _, want := range []string{"all", "mine"} {
		if tgt, _ := invocation(t, b.nextNonPing(5*time.Second)); tgt != want {
			t.Fatalf("b got %s, want %s", tgt, want)
		}
	}
	a.expectNothing(200 * time.Millisecond)
}

func TestAppNegotiateAuth(t *testing.T) {
	t.Parallel()
	h := startHub(t, jwtCfg())
	u := h.NegotiateURL() + "?hub=orders&negotiateVersion=1"
	other, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "x", "iss": "test-issuer", "aud": "test-app", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte("another-secret-0123456789"))
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "x", "iss": "test-issuer", "aud": "test-app", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"missing", "", 401},
		{"expired", appToken(t, jwt.MapClaims{"sub": "x", "exp": time.Now().Add(-time.Hour).Unix()}), 401},
		{"no exp", appToken(t, jwt.MapClaims{"sub": "x", "exp": nil}), 401},
		{"bad signature", other, 401},
		{"alg none", none, 401},
		{"wrong issuer", appToken(t, jwt.MapClaims{"sub": "x", "iss": "evil"}), 401},
		{"wrong audience", appToken(t, jwt.MapClaims{"sub": "x", "aud": "other"}), 401},
		{"no user claim", appToken(t, jwt.MapClaims{"tid": "a"}), 401},
		{"garbage", "not.a.jwt", 401},
		{"valid", appToken(t, jwt.MapClaims{"sub": "x", "tid": "a"}), 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := do(t, "POST", u, tc.token, nil, nil)
			if code != tc.want {
				t.Fatalf("got %d %s, want %d", code, body, tc.want)
			}
		})
	}
	if code, _, _ := do(t, "POST", h.NegotiateURL()+"?hub=1bad", appToken(t, jwt.MapClaims{"sub": "x"}), nil, nil); code != 400 {
		t.Fatalf("bad hub: %d", code)
	}
	// The valid negotiate joined x to its tenant's group and the literal one.
	ctx := context.Background()
	for g, want := range map[string]bool{"tenant-a": true, "everyone": true, "tenant-b": false} {
		if got, err := h.rest.UserInGroup(ctx, "orders", g, "x"); err != nil || got != want {
			t.Errorf("x in %s: %v %v, want %v", g, got, err, want)
		}
	}
}

func TestClientTokensAndConnectionTokens(t *testing.T) {
	t.Parallel()
	h := startHub(t, anonCfg())
	n := h.appNegotiate(t, "chat", "")
	if !strings.Contains(n.URL, "/client/?hub=chat") {
		t.Fatalf("url %s", n.URL)
	}
	negURL := strings.Replace(n.URL, "/client/?", "/client/negotiate?", 1)
	// Client negotiate: no, bad or foreign-hub token → 401.
	if code, _, _ := do(t, "POST", negURL, "", nil, nil); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	bad, _ := signalr.SignAccessToken("wrong-key", n.URL, "", time.Hour, time.Now())
	if code, _, _ := do(t, "POST", negURL, bad, nil, nil); code != 401 {
		t.Fatalf("bad key: %d", code)
	}
	if code, _, _ := do(t, "POST", strings.Replace(negURL, "hub=chat", "hub=other", 1), n.AccessToken, nil, nil); code != 401 {
		t.Fatalf("token for another hub: %d", code)
	}
	expired, _ := signalr.SignAccessToken(h.AccessKey(), n.URL, "", -time.Hour, time.Now())
	if code, _, _ := do(t, "POST", negURL, expired, nil, nil); code != 401 {
		t.Fatalf("expired: %d", code)
	}
	// v1 answer: WebSockets first, with a connection token.
	cn := clientNegotiate(t, n)
	if cn.NegotiateVersion != 1 || cn.ConnectionToken == "" || cn.ConnectionToken == cn.ConnectionID || cn.AvailableTransports[0].Transport != "WebSockets" {
		t.Fatalf("negotiation %+v", cn)
	}
	// v0 answer: no token; the client connects with id=connectionId.
	code, _, body := do(t, "POST", negURL, n.AccessToken, nil, nil)
	var v0 clientNegotiation
	_ = json.Unmarshal(body, &v0)
	if code != 200 || v0.ConnectionToken != "" || v0.NegotiateVersion != 0 {
		t.Fatalf("v0: %d %s", code, body)
	}
	dial(t, n, clientNegotiation{ConnectionToken: v0.ConnectionID, ConnectionID: v0.ConnectionID})

	wsURL := "ws" + strings.TrimPrefix(n.URL, "http")
	hdr := http.Header{"Authorization": {"Bearer " + n.AccessToken}}
	status := func(u string, hdr http.Header) int {
		ws, resp, err := websocket.Dial(context.Background(), u, &websocket.DialOptions{HTTPHeader: hdr})
		if err == nil {
			ws.CloseNow()
			return 101
		}
		if resp == nil {
			t.Fatal(err)
		}
		return resp.StatusCode
	}
	// A used token is gone; an unknown one never existed.
	c := dial(t, n, cn)
	_ = c
	if got := status(wsURL+"&id="+cn.ConnectionToken, hdr); got != 404 {
		t.Fatalf("reused token: %d", got)
	}
	if got := status(wsURL+"&id=nope", hdr); got != 404 {
		t.Fatalf("unknown token: %d", got)
	}
	// (An unused token expires: TestConnectTokenExpiry.)
	// The token may come in the access_token query (browsers), and
	// skipNegotiation connects without id.
	if got := status(wsURL+"&access_token="+n.AccessToken, nil); got != 101 {
		t.Fatalf("query token, no id: %d", got)
	}
	if got := status(wsURL, nil); got != 401 {
		t.Fatalf("no token: %d", got)
	}
}

// TestConnectTokenExpiry: a connection token that waits longer than its
// TTL for its WebSocket is unknown (404); one within it is taken. The hub
// runs in a synctest bubble, so the token is presented at exact instants of
// the bubble's clock instead of after a real sleep.
func TestConnectTokenExpiry(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const ttl = 300 * time.Millisecond
		h := newInProcess(t, anonCfg(), WithConnectTokenTTL(ttl))
		rec := h.do("POST", h.s.cfg.Negotiate.Path+"/negotiate?hub=chat&negotiateVersion=1", "", nil)
		var n negotiated
		if err := json.Unmarshal(rec.Body.Bytes(), &n); rec.Code != 200 || err != nil {
			t.Fatalf("app negotiate: %d %s", rec.Code, rec.Body)
		}
		negotiate := func() string {
			t.Helper()
			rec := h.do("POST", "/client/negotiate?hub=chat&negotiateVersion=1", n.AccessToken, nil)
			var cn clientNegotiation
			if err := json.Unmarshal(rec.Body.Bytes(), &cn); rec.Code != 200 || err != nil || cn.ConnectionToken == "" {
				t.Fatalf("client negotiate: %d %s", rec.Code, rec.Body)
			}
			return cn.ConnectionToken
		}
		// The upgrade itself cannot complete on a recorder; what matters is
		// whether the token was found before it.
		connect := func(token string) *httptest.ResponseRecorder {
			t.Helper()
			return h.do("GET", "/client/?hub=chat&id="+token, n.AccessToken, map[string]string{
				"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
		}
		found := func(rec *httptest.ResponseRecorder) bool {
			return rec.Code != http.StatusNotFound && rec.Header().Get("x-ms-error-code") != "Error.Connection.NotExisted"
		}
		inTime, late := negotiate(), negotiate()
		time.Sleep(ttl - time.Millisecond)
		if rec := connect(inTime); !found(rec) {
			t.Fatalf("a token %v old (TTL %v) was refused: %d %s", ttl-time.Millisecond, ttl, rec.Code, rec.Body)
		}
		time.Sleep(2 * time.Millisecond)
		if rec := connect(late); found(rec) {
			t.Fatalf("a token %v old (TTL %v) was taken: %d %s", ttl+time.Millisecond, ttl, rec.Code, rec.Body)
		}
		// A token is taken once.
		if rec := connect(inTime); found(rec) {
			t.Fatalf("a used token was taken again: %d", rec.Code)
		}
	})
}

func TestHandshakeErrors(t *testing.T) {
	t.Parallel()
	h := startHub(t, anonCfg())
	n := h.appNegotiate(t, "chat", "")
	for _, tc := range []struct{ send, wantErr string }{
		{`{"protocol":"xml","version":1}` + "\x1e", "Requested protocol 'xml' is not available."},
		{`{"protocol":"json","version":3}` + "\x1e", "The server does not support version 3 of the 'json' protocol."},
		{`[1,2]` + "\x1e", "Handshake request is not a JSON object."},
		{`{"version":1}` + "\x1e", "Handshake request is missing the protocol."},
	} {
		cn := clientNegotiate(t, n)
		ws, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(n.URL, "http")+"&id="+cn.ConnectionToken,
			&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + n.AccessToken}}})
		if err != nil {
			t.Fatal(err)
		}
		c := &wsClient{t: t, ws: ws}
		c.write(tc.send)
		var resp struct{ Error string }
		if err := json.Unmarshal(c.next(5*time.Second), &resp); err != nil || resp.Error != tc.wantErr {
			t.Errorf("%q: got %q", tc.send, resp.Error)
		}
		if _, err := c.tryNext(5 * time.Second); websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
			t.Errorf("%q: connection not closed: %v", tc.send, err)
		}
		ws.CloseNow()
	}
	// A handshake split over two messages, followed by records in the same
	// message, is fine.
	cn := clientNegotiate(t, n)
	ws, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(n.URL, "http")+"&id="+cn.ConnectionToken,
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + n.AccessToken}}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	c := &wsClient{t: t, ws: ws}
	c.write(`{"protocol":"js`)
	c.write(`on","version":1}` + "\x1e" + `{"type":6}` + "\x1e" + `{"type":1,"invocationId":"7","target":"x","arguments":[]}` + "\x1e")
	if got := string(c.next(5 * time.Second)); got != "{}" {
		t.Fatalf("handshake answer %q", got)
	}
	if got := string(c.nextNonPing(5 * time.Second)); !strings.Contains(got, `"type":3`) || !strings.Contains(got, `"invocationId":"7"`) {
		t.Fatalf("invocation answer %s", got)
	}
	// A broken record gets a Close without reconnect.
	c.write("{not json\x1e")
	if got := string(c.nextNonPing(5 * time.Second)); !strings.Contains(got, `"type":7`) || strings.Contains(got, "allowReconnect") {
		t.Fatalf("close %s", got)
	}
}

func TestKeepAliveAndClientTimeout(t *testing.T) {
	t.Parallel()
	h := startHub(t, anonCfg(), WithKeepAlive(50*time.Millisecond), WithClientTimeout(400*time.Millisecond))
	c := h.connect(t, "chat", "")
	// Pings arrive while nothing else is sent…
	for range 3 {
		if got := string(c.next(time.Second)); got != `{"type":6}` {
			t.Fatalf("got %s, want ping", got)
		}
	}
	// …and a client that never speaks is dropped after the client timeout.
	start := time.Now()
	for {
		if _, err := c.tryNext(3 * time.Second); err != nil {
			break
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("silent client kept for %v", d)
	}
	// A client that pings stays.
	c2 := h.connect(t, "chat", "")
	for range 8 {
		c2.write(`{"type":6}` + "\x1e")
		time.Sleep(100 * time.Millisecond)
	}
	if ok, err := h.rest.ConnectionExists(context.Background(), "chat", c2.id); !ok || err != nil {
		t.Fatalf("pinging client dropped: %v %v", ok, err)
	}
}

func TestSlowClientIsDisconnected(t *testing.T) {
	t.Parallel()
	h := startHub(t, anonCfg(), WithSendQueueBytes(1<<20))
	slow := h.connect(t, "chat", "")
	fast := h.connect(t, "chat", "")
	payload := json.RawMessage(`"` + strings.Repeat("x", 500_000) + `"`)
	const n = 80 // 40 MB: more than the socket buffers and the queue hold
	got := testkit.Go(t, func() error {
		for i := range n {
			if _, err := fast.tryNext(10 * time.Second); err != nil {
				return fmt.Errorf("fast client after %d: %v", i, err)
			}
		}
		return nil
	})
	for range n {
		if err := h.Publisher().Publish(context.Background(), &publish.Batch{Audience: publish.Audience{Hub: "chat", Method: "m"}, Payload: payload}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := testkit.Recv(t, got, time.Minute, "the fast client's records"); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "the slow client to be disconnected", func() string {
		ok, err := h.rest.ConnectionExists(context.Background(), "chat", slow.id)
		switch {
		case err != nil:
			return err.Error()
		case ok:
			return "still connected"
		}
		return ""
	})
	if ok, _ := h.rest.ConnectionExists(context.Background(), "chat", fast.id); !ok {
		t.Fatal("fast client dropped")
	}
}

func TestShutdownClosesWithReconnect(t *testing.T) {
	t.Parallel()
	s, err := New(anonCfg(), WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	s.cfg.Listen = "127.0.0.1:0"
	stop := testkit.Run(t, s.Run)
	<-s.Listening()
	h := &testHub{Server: s}
	c := h.connect(t, "chat", "")
	stopped := testkit.Go(t, stop)
	if got := string(c.nextNonPing(5 * time.Second)); got != `{"type":7,"error":"Server is shutting down.","allowReconnect":true}` {
		t.Fatalf("got %s", got)
	}
	// The client goes, as the official ones do on a Close: Run returns
	// without waiting out its shutdown grace.
	c.ws.Close(websocket.StatusNormalClosure, "")
	if err := testkit.Recv(t, stopped, 4*time.Second, "Run to return once the client closed"); err != nil {
		t.Fatal(err)
	}
}

func TestStaticAndCORS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := writeFile(dir+"/index.html", "<h1>live</h1>"); err != nil {
		t.Fatal(err)
	}
	cfg := anonCfg()
	cfg.Static = dir
	cfg.CORSOrigins = []string{"http://app.example:3000"}
	h := startHub(t, cfg)
	code, _, body := do(t, "GET", h.Endpoint()+"/", "", nil, nil)
	if code != 200 || string(body) != "<h1>live</h1>" {
		t.Fatalf("static: %d %s", code, body)
	}
	code, hdr, _ := do(t, "OPTIONS", h.NegotiateURL(), "", nil, map[string]string{
		"Origin": "http://app.example:3000", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,x-signalr-user-agent"})
	if code != 204 || hdr.Get("Access-Control-Allow-Origin") != "http://app.example:3000" || hdr.Get("Access-Control-Allow-Credentials") != "true" ||
		hdr.Get("Access-Control-Allow-Headers") != "authorization,x-signalr-user-agent" {
		t.Fatalf("preflight: %d %v", code, hdr)
	}
	code, hdr, _ = do(t, "POST", h.NegotiateURL()+"?hub=x", "", nil, map[string]string{"Origin": "http://evil.example"})
	if code != 200 || hdr.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("foreign origin: %d %v", code, hdr)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]Config{
		"no auth":        {},
		"two jwt keys":   {Negotiate: NegotiateConfig{Auth: NegotiateAuth{JWT: &JWTAuth{HS256Secret: testSecret, JWKSURL: "https://x"}}}},
		"bad template":   {Negotiate: NegotiateConfig{Auth: NegotiateAuth{Anonymous: true}, Groups: []string{"t-{tid}"}}},
		"missing static": {Negotiate: NegotiateConfig{Auth: NegotiateAuth{Anonymous: true}}, Static: "/does/not/exist"},
		"key with ;":     {Negotiate: NegotiateConfig{Auth: NegotiateAuth{Anonymous: true}}, AccessKey: "a;b"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
