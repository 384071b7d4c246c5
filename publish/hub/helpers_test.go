package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/publish/signalr"
)

const testSecret = "app-secret-for-tests-0123456789"

// testHub is a running hub for one test.
type testHub struct {
	*Server
	rest *signalr.Client
}

// testHubs are the hubs the test configs serve.
var testHubs = []string{"chat", "orders", "other", "h", "x"}

func anonCfg() Config {
	return Config{Hubs: testHubs, Negotiate: NegotiateConfig{Auth: NegotiateAuth{Anonymous: true}}}
}

func jwtCfg() Config {
	return Config{Hubs: testHubs, Negotiate: NegotiateConfig{
		Auth:   NegotiateAuth{JWT: &JWTAuth{HS256Secret: testSecret, Issuer: "test-issuer", Audience: "test-app"}},
		Groups: []string{"tenant-{claims.tid}", "everyone"},
	}}
}

// startHub runs a hub on a free port until the test ends, and checks that
// Run returns cleanly then.
func startHub(t *testing.T, cfg Config, opts ...Option) *testHub {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	opts = append([]Option{WithLogger(testLogger(t)), WithShutdownGrace(2 * time.Second)}, opts...)
	s, err := New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Run(t, s.Run)
	<-s.Listening()
	rest, err := signalr.NewClient(s.ConnectionString())
	if err != nil {
		t.Fatal(err)
	}
	return &testHub{Server: s, rest: rest}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func appToken(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	base := jwt.MapClaims{"iss": "test-issuer", "aud": "test-app", "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range claims {
		if v == nil {
			delete(base, k)
		} else {
			base[k] = v
		}
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, base).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// post sends a request and returns status, headers and body.
func do(t *testing.T, method, url, token string, body []byte, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

type negotiated struct {
	URL         string `json:"url"`
	AccessToken string `json:"accessToken"`
}

// appNegotiate calls the app negotiate endpoint.
func (h *testHub) appNegotiate(t *testing.T, hub, token string) negotiated {
	t.Helper()
	code, _, body := do(t, "POST", h.NegotiateURL()+"?hub="+hub+"&negotiateVersion=1", token, nil, nil)
	if code != 200 {
		t.Fatalf("app negotiate: %d %s", code, body)
	}
	var n negotiated
	if err := json.Unmarshal(body, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

type clientNegotiation struct {
	NegotiateVersion    int    `json:"negotiateVersion"`
	ConnectionID        string `json:"connectionId"`
	ConnectionToken     string `json:"connectionToken"`
	AvailableTransports []struct {
		Transport       string   `json:"transport"`
		TransferFormats []string `json:"transferFormats"`
	} `json:"availableTransports"`
}

// clientNegotiate does the second hop the official clients do.
func clientNegotiate(t *testing.T, n negotiated) clientNegotiation {
	t.Helper()
	u := strings.Replace(n.URL, "/client/?", "/client/negotiate?", 1) + "&negotiateVersion=1"
	code, _, body := do(t, "POST", u, n.AccessToken, nil, nil)
	if code != 200 {
		t.Fatalf("client negotiate: %d %s", code, body)
	}
	var cn clientNegotiation
	if err := json.Unmarshal(body, &cn); err != nil {
		t.Fatal(err)
	}
	return cn
}

// wsClient is a minimal SignalR JSON-protocol client.
type wsClient struct {
	t    *testing.T
	ws   *websocket.Conn
	id   string
	buf  []byte
	recs [][]byte
}

// dial opens the WebSocket for a negotiated connection and does the
// handshake.
func dial(t *testing.T, n negotiated, cn clientNegotiation) *wsClient {
	t.Helper()
	u := "ws" + strings.TrimPrefix(n.URL, "http") + "&id=" + cn.ConnectionToken
	ws, resp, err := websocket.Dial(context.Background(), u, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + n.AccessToken}}})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (status %d)", err, status)
	}
	ws.SetReadLimit(4 << 20)
	c := &wsClient{t: t, ws: ws, id: cn.ConnectionID}
	t.Cleanup(func() { ws.CloseNow() })
	c.write(`{"protocol":"json","version":1}` + "\x1e")
	if got := c.next(5 * time.Second); string(got) != "{}" {
		t.Fatalf("handshake answer %q", got)
	}
	return c
}

// connect negotiates through the app negotiate and opens a connection.
func (h *testHub) connect(t *testing.T, hub, appTok string) *wsClient {
	t.Helper()
	n := h.appNegotiate(t, hub, appTok)
	return dial(t, n, clientNegotiate(t, n))
}

func (c *wsClient) write(s string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// next returns the next record, failing the test after d.
func (c *wsClient) next(d time.Duration) []byte {
	c.t.Helper()
	rec, err := c.tryNext(d)
	if err != nil {
		c.t.Fatalf("next record: %v", err)
	}
	return rec
}

func (c *wsClient) tryNext(d time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for len(c.recs) == 0 {
		typ, data, err := c.ws.Read(ctx)
		if err != nil {
			return nil, err
		}
		if typ != websocket.MessageText {
			return nil, errors.New("binary frame from the hub")
		}
		if data[len(data)-1] != recordSeparator {
			return nil, errors.New("message ends inside a record")
		}
		c.buf = append(c.buf, data...)
		c.recs, c.buf = splitRecords(c.buf)
		c.buf = append([]byte(nil), c.buf...)
	}
	r := c.recs[0]
	c.recs = c.recs[1:]
	return r, nil
}

// nextNonPing skips pings.
func (c *wsClient) nextNonPing(d time.Duration) []byte {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		r := c.next(time.Until(deadline))
		if string(r) != `{"type":6}` {
			return r
		}
	}
}

// expectNothing checks no non-ping record arrives within d. The read
// timeout closes the connection (coder/websocket does), so call it last.
func (c *wsClient) expectNothing(d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		r, err := c.tryNext(time.Until(deadline))
		if err != nil {
			return
		}
		if string(r) != `{"type":6}` {
			c.t.Fatalf("unexpected record %s", r)
		}
	}
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o644) }

// inProcess is a hub served without a listener, through its Handler: no
// goroutine and no socket, so a test can run it inside a synctest bubble,
// where time.Now is the bubble's clock and time.Sleep advances it at once.
type inProcess struct {
	t *testing.T
	s *Server
}

// inProcessHost is the host in-process requests name.
const inProcessHost = "hub.test"

func newInProcess(t *testing.T, cfg Config, opts ...Option) *inProcess {
	t.Helper()
	s, err := New(cfg, append([]Option{WithLogger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return &inProcess{t: t, s: s}
}

// do serves one request and returns the recorded answer.
func (h *inProcess) do(method, target, token string, hdr map[string]string) *httptest.ResponseRecorder {
	h.t.Helper()
	req := httptest.NewRequest(method, "http://"+inProcessHost+target, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.s.Handler().ServeHTTP(rec, req)
	return rec
}

// rest calls the REST API with a freshly signed access token.
func (h *inProcess) rest(method, target string) int {
	h.t.Helper()
	tok, err := signalr.SignAccessToken(h.s.AccessKey(), "http://"+inProcessHost+strings.SplitN(target, "?", 2)[0], "", time.Minute, time.Now())
	if err != nil {
		h.t.Fatal(err)
	}
	return h.do(method, target, tok, nil).Code
}
