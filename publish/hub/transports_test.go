package hub

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/changecast/changecast/internal/testkit"
)

// clientReq does one request of a client transport with its token in the
// Authorization header (what the official clients send on POSTs and polls).
func clientReq(t *testing.T, method, u, token, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// Long polling as TransportProtocols.md has it: the first poll answers at
// once and empty, the handshake comes by POST and its answer in the next
// poll, sends arrive in polls, DELETE ends the connection and a poll then
// gets 204.
func TestLongPolling(t *testing.T) {
	t.Parallel()
	h := startHub(t, anonCfg(), WithPollTimeout(300*time.Millisecond))
	n := h.appNegotiate(t, "chat", "")
	cn := clientNegotiate(t, n)
	var offered []string
	for _, tr := range cn.AvailableTransports {
		offered = append(offered, tr.Transport+":"+strings.Join(tr.TransferFormats, "+"))
	}
	if got := strings.Join(offered, ","); got != "WebSockets:Text+Binary,ServerSentEvents:Text,LongPolling:Text+Binary" {
		t.Fatalf("negotiate offers %s", got)
	}
	u := n.URL + "&id=" + cn.ConnectionToken
	if resp, body := clientReq(t, "GET", u, n.AccessToken, "", nil); resp.StatusCode != 200 || body != "" {
		t.Fatalf("first poll: %d %q", resp.StatusCode, body)
	}
	if resp, _ := clientReq(t, "POST", u, n.AccessToken, `{"protocol":"json","version":1}`+"\x1e", nil); resp.StatusCode != 200 {
		t.Fatalf("handshake POST: %d", resp.StatusCode)
	}
	if resp, body := clientReq(t, "GET", u, n.AccessToken, "", nil); resp.StatusCode != 200 || body != "{}\x1e" {
		t.Fatalf("handshake answer: %d %q", resp.StatusCode, body)
	}
	// An empty poll after the poll timeout.
	if resp, body := clientReq(t, "GET", u, n.AccessToken, "", nil); resp.StatusCode != 200 || body != "" {
		t.Fatalf("idle poll: %d %q", resp.StatusCode, body)
	}
	if code, _, b := h.restCall(t, "POST", "/api/hubs/chat/connections/"+cn.ConnectionID+"/:send?api-version=2022-06-01", `{"target":"x","arguments":[{"a":1}]}`); code != 202 {
		t.Fatalf("send: %d %s", code, b)
	}
	if resp, body := clientReq(t, "GET", u, n.AccessToken, "", nil); resp.StatusCode != 200 || body != `{"type":1,"target":"x","arguments":[{"a":1}]}`+"\x1e" {
		t.Fatalf("poll: %d %q", resp.StatusCode, body)
	}
	// Another user's token cannot poll, send or end it.
	other := h.appNegotiate(t, "chat", "")
	for _, m := range []string{"GET", "POST", "DELETE"} {
		if resp, _ := clientReq(t, m, u, other.AccessToken, "", nil); resp.StatusCode != 403 {
			t.Errorf("%s with another user's token: %d", m, resp.StatusCode)
		}
	}
	if resp, _ := clientReq(t, "DELETE", u, n.AccessToken, "", nil); resp.StatusCode != 202 {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	if resp, _ := clientReq(t, "GET", u, n.AccessToken, "", nil); resp.StatusCode != 404 && resp.StatusCode != 204 {
		t.Fatalf("poll after DELETE: %d", resp.StatusCode)
	}
	testkit.Until(t, 5*time.Second, "the connection to be gone", func() bool { return h.reg.stats().Conns == 0 })
}

// A long-polling client that stops polling is dropped after the client
// timeout.
func TestLongPollingClientGone(t *testing.T) {
	t.Parallel()
	h := startHub(t, anonCfg(), WithClientTimeout(time.Second), withSweepEvery(50*time.Millisecond))
	n := h.appNegotiate(t, "chat", "")
	cn := clientNegotiate(t, n)
	u := n.URL + "&id=" + cn.ConnectionToken
	if resp, body := clientReq(t, "GET", u, n.AccessToken, "", nil); resp.StatusCode != 200 || body != "" {
		t.Fatalf("first poll: %d %q", resp.StatusCode, body)
	}
	if resp, _ := clientReq(t, "POST", u, n.AccessToken, `{"protocol":"json","version":1}`+"\x1e", nil); resp.StatusCode != 200 {
		t.Fatalf("handshake POST: %d", resp.StatusCode)
	}
	// The connection existed: the hub holds it under its token, and the
	// drop below is of this connection, not of one that never opened.
	if h.reg.lookup(cn.ConnectionToken, "chat") == nil || h.reg.stats().Conns != 1 {
		t.Fatalf("after the handshake the hub holds %d connections, this one: %v", h.reg.stats().Conns, h.reg.lookup(cn.ConnectionToken, "chat") != nil)
	}
	testkit.Until(t, 5*time.Second, "the silent long-polling client to be dropped", func() bool {
		return h.reg.lookup(cn.ConnectionToken, "chat") == nil && h.reg.stats().Conns == 0
	})
	// Gone for the client too: its next poll is refused, not served.
	if resp, _ := clientReq(t, "GET", u, n.AccessToken, "", nil); resp.StatusCode != 404 && resp.StatusCode != 204 {
		t.Fatalf("poll after the drop: %d", resp.StatusCode)
	}
}

// Server-Sent Events: every message is one event of "data:" lines (a
// newline inside the message gives two lines), the client's messages come
// by POST, and MessagePack is refused (text only).
func TestServerSentEvents(t *testing.T) {
	t.Parallel()
	h := startHub(t, anonCfg())
	n := h.appNegotiate(t, "chat", "")
	cn := clientNegotiate(t, n)
	u := n.URL + "&id=" + cn.ConnectionToken
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, nextEvent := sseStream(t, ctx, u, n.AccessToken)
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	next := func() string {
		t.Helper()
		ev, err := nextEvent()
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		return ev
	}
	if r, _ := clientReq(t, "POST", u, n.AccessToken, `{"protocol":"json","version":1}`+"\x1e", nil); r.StatusCode != 200 {
		t.Fatalf("handshake POST: %d", r.StatusCode)
	}
	if got := next(); got != "{}\x1e" {
		t.Fatalf("handshake answer %q", got)
	}
	body := "{\"target\":\"x\",\"arguments\":[{\n\"a\": 1\r\n}]}"
	if code, _, b := h.restCall(t, "POST", "/api/hubs/chat/connections/"+cn.ConnectionID+"/:send?api-version=2022-06-01", body); code != 202 {
		t.Fatalf("send: %d %s", code, b)
	}
	got := next()
	var m struct {
		Target    string
		Arguments []map[string]int
	}
	if err := json.Unmarshal([]byte(strings.TrimSuffix(got, "\x1e")), &m); err != nil || m.Arguments[0]["a"] != 1 || !strings.Contains(got, "\n") {
		t.Fatalf("event %q: %v", got, err)
	}

	// MessagePack over Server-Sent Events is refused in the handshake.
	cn2 := clientNegotiate(t, n)
	u2 := n.URL + "&id=" + cn2.ConnectionToken
	req2, _ := http.NewRequestWithContext(ctx, "GET", u2+"&access_token="+n.AccessToken, nil)
	req2.Header.Set("Accept", "text/event-stream")
	resp2, err := http.DefaultClient.Do(req2)
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	clientReq(t, "POST", u2, n.AccessToken, `{"protocol":"messagepack","version":1}`+"\x1e", nil)
	b, _ := io.ReadAll(resp2.Body)
	if !strings.Contains(string(b), "does not support 'Binary' transfer format") {
		t.Fatalf("messagepack over SSE: %q", b)
	}
}

// sseStream opens the Server-Sent Events stream of the connection at u
// and returns the response and a reader of its events (the data lines of
// one event joined by \n; io.EOF once the stream ends).
func sseStream(t *testing.T, ctx context.Context, u, token string) (*http.Response, func() (string, error)) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", u+"&access_token="+token, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	events := bufio.NewReader(resp.Body)
	return resp, func() (string, error) {
		var data []string
		for {
			line, err := events.ReadString('\n')
			if err != nil {
				return "", err
			}
			line = strings.TrimRight(line, "\n")
			if line == "" && len(data) > 0 {
				return strings.Join(data, "\n"), nil
			}
			if d, ok := strings.CutPrefix(line, "data: "); ok {
				data = append(data, d)
			}
		}
	}
}

// dialStateful opens (or reopens) the WebSocket of a stateful connection.
func dialStateful(t *testing.T, n negotiated, token string) (*wsClient, int) {
	t.Helper()
	u := "ws" + strings.TrimPrefix(n.URL, "http") + "&id=" + token
	ws, resp, err := websocket.Dial(context.Background(), u, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + n.AccessToken}}})
	if err != nil {
		if resp != nil {
			return nil, resp.StatusCode
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	return &wsClient{t: t, ws: ws}, 101
}

// Stateful reconnect: negotiate offers it only when asked; a WebSocket
// that drops is taken back with a Sequence message and every message not
// acknowledged; past the buffer or the window the connection is gone.
func TestStatefulReconnect(t *testing.T) {
	t.Parallel()
	cfg := anonCfg()
	cfg.StatefulReconnect = StatefulReconnect{BufferBytes: 2000, Window: time.Second}
	h := startHub(t, cfg, withSweepEvery(50*time.Millisecond))
	n := h.appNegotiate(t, "chat", "")
	negURL := strings.Replace(n.URL, "/client/?", "/client/negotiate?", 1) + "&negotiateVersion=1"
	if _, _, plain := do(t, "POST", negURL, n.AccessToken, nil, nil); strings.Contains(string(plain), "useStatefulReconnect") {
		t.Fatalf("stateful reconnect offered to a client that did not ask: %s", plain)
	}
	code, _, body := do(t, "POST", strings.Replace(n.URL, "/client/?", "/client/negotiate?", 1)+"&negotiateVersion=1&useStatefulReconnect=true", n.AccessToken, nil, nil)
	var cn struct {
		clientNegotiation
		UseStatefulReconnect bool `json:"useStatefulReconnect"`
	}
	if code != 200 || json.Unmarshal(body, &cn) != nil || !cn.UseStatefulReconnect {
		t.Fatalf("negotiate with useStatefulReconnect: %d %s", code, body)
	}
	c, _ := dialStateful(t, n, cn.ConnectionToken)
	c.write(`{"protocol":"json","version":2}` + "\x1e")
	if got := c.next(5 * time.Second); string(got) != "{}" {
		t.Fatalf("handshake %s", got)
	}
	send := func(i int) {
		t.Helper()
		if code, _, b := h.restCall(t, "POST", "/api/hubs/chat/connections/"+cn.ConnectionID+"/:send?api-version=2022-06-01",
			`{"target":"x","arguments":[`+itoa(i)+`]}`); code != 202 {
			t.Fatalf("send: %d %s", code, b)
		}
	}
	for i := 1; i <= 3; i++ {
		send(i)
	}
	for i := 1; i <= 3; i++ {
		if _, args := invocation(t, c.nextNonPing(5*time.Second)); string(args[0]) != itoa(i) {
			t.Fatalf("message %d: %s", i, args[0])
		}
	}
	c.write(`{"type":8,"sequenceId":1}` + "\x1e") // the client has 1; 2 and 3 not acknowledged
	cc := h.reg.lookup(cn.ConnectionToken, "chat")
	testkit.Until(t, 5*time.Second, "the hub to read the Ack", func() bool {
		cc.q.mu.Lock()
		defer cc.q.mu.Unlock()
		return len(cc.q.unacked) == 2
	})
	c.ws.CloseNow()
	testkit.Until(t, 5*time.Second, "the hub to notice the drop", func() bool {
		cc.mu.Lock()
		defer cc.mu.Unlock()
		return cc.attached == 0
	})
	send(4)
	c2, status := dialStateful(t, n, cn.ConnectionToken)
	if status != 101 {
		t.Fatalf("reconnect: %d", status)
	}
	c2.write(`{"type":9,"sequenceId":1}` + "\x1e")
	if got := string(c2.nextNonPing(5 * time.Second)); got != `{"type":9,"sequenceId":2}` {
		t.Fatalf("after the reconnect %s, want Sequence 2", got)
	}
	for i := 2; i <= 4; i++ {
		if _, args := invocation(t, c2.nextNonPing(5*time.Second)); string(args[0]) != itoa(i) {
			t.Fatalf("resent %d: %s", i, args[0])
		}
	}
	// Detached past the buffer: the connection ends.
	c2.ws.CloseNow()
	testkit.Until(t, 5*time.Second, "the hub to notice the second drop", func() bool {
		cc := h.reg.lookup(cn.ConnectionToken, "chat")
		if cc == nil {
			return true
		}
		cc.mu.Lock()
		defer cc.mu.Unlock()
		return cc.attached == 0
	})
	h.restCall(t, "POST", "/api/hubs/chat/connections/"+cn.ConnectionID+"/:send?api-version=2022-06-01", `{"target":"x","arguments":["`+strings.Repeat("y", 3000)+`"]}`)
	testkit.Until(t, 5*time.Second, "the overflowing connection to end", func() bool { return h.reg.lookup(cn.ConnectionToken, "chat") == nil })
	if _, status := dialStateful(t, n, cn.ConnectionToken); status != 404 {
		t.Fatalf("reconnect after the buffer overflowed: %d, want 404", status)
	}

	// Not back within the window: gone too.
	code, _, body = do(t, "POST", strings.Replace(n.URL, "/client/?", "/client/negotiate?", 1)+"&negotiateVersion=1&useStatefulReconnect=true", n.AccessToken, nil, nil)
	if code != 200 || json.Unmarshal(body, &cn) != nil {
		t.Fatal(code)
	}
	c3, _ := dialStateful(t, n, cn.ConnectionToken)
	c3.write(`{"protocol":"json","version":2}` + "\x1e")
	c3.next(5 * time.Second)
	c3.ws.CloseNow()
	testkit.Until(t, 10*time.Second, "the window to pass", func() bool { return h.reg.lookup(cn.ConnectionToken, "chat") == nil })
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }
