package hub

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// closedWith reads until the connection ends and returns the WebSocket
// close status (-1: no close frame, the TCP connection was dropped).
func closedWith(t *testing.T, c *wsClient) websocket.StatusCode {
	t.Helper()
	for {
		if _, err := c.tryNext(10 * time.Second); err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

// Item 11: a client's Close message is answered with a WebSocket close
// frame, not a dropped TCP connection.
func TestClientCloseGetsCloseFrame(t *testing.T) {
	t.Parallel()
	h := startHub(t, anonCfg())
	c := h.connect(t, "chat", "")
	c.write(`{"type":7}` + "\x1e")
	if got := closedWith(t, c); got != websocket.StatusNormalClosure {
		t.Fatalf("close status %d, want %d", got, websocket.StatusNormalClosure)
	}
}

// Item 11: an oversized message, or a record spread over messages that is
// oversized as a whole, gets a Close with an error before the WebSocket
// closes.
func TestOversizedMessagesGetAnError(t *testing.T) {
	t.Parallel()
	h := startHub(t, anonCfg())
	for name, parts := range map[string][]string{
		"one message":   {`{"type":6,"x":"` + strings.Repeat("a", maxReceive) + `"}` + "\x1e"},
		"no separator":  {strings.Repeat("a", maxReceive+1)},
		"spread record": {`{"type":6,"x":"` + strings.Repeat("a", 40<<10), strings.Repeat("a", 40<<10) + `"}` + "\x1e"},
		"spread tail":   {`{"type":6,"x":"` + strings.Repeat("a", 40<<10), strings.Repeat("a", 40<<10)},
	} {
		c := h.connect(t, "chat", "")
		for _, p := range parts {
			c.write(p)
		}
		var m struct {
			Type           int
			Error          string
			AllowReconnect bool
		}
		if rec := c.nextNonPing(5 * time.Second); json.Unmarshal(rec, &m) != nil || m.Type != typeClose || !strings.Contains(m.Error, "too large") || m.AllowReconnect {
			t.Errorf("%s: got %s, want a Close with an error", name, rec)
			continue
		}
		if got := closedWith(t, c); got != websocket.StatusMessageTooBig {
			t.Errorf("%s: close status %d, want %d", name, got, websocket.StatusMessageTooBig)
		}
	}
	// Records just under the limit pass, also spread over messages.
	c := h.connect(t, "chat", "")
	rec := `{"type":1,"invocationId":"9","target":"x","arguments":["` + strings.Repeat("a", maxReceive-80) + `"]}` + "\x1e"
	c.write(rec[:maxReceive/2])
	c.write(rec[maxReceive/2:])
	if got := string(c.nextNonPing(5 * time.Second)); !strings.Contains(got, `"invocationId":"9"`) {
		t.Fatalf("got %s", got)
	}
}

// Item 11: an oversized handshake gets a handshake error response before
// the WebSocket closes.
func TestOversizedHandshakeGetsAnError(t *testing.T) {
	t.Parallel()
	h := startHub(t, anonCfg())
	n := h.appNegotiate(t, "chat", "")
	for name, parts := range map[string][]string{
		"one message": {`{"protocol":"json","version":1,"x":"` + strings.Repeat("a", maxReceive) + `"}` + "\x1e"},
		"spread":      {`{"protocol":"json","version":1,"x":"` + strings.Repeat("a", 40<<10), strings.Repeat("a", 40<<10)},
	} {
		cn := clientNegotiate(t, n)
		ws, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(n.URL, "http")+"&id="+cn.ConnectionToken,
			&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + n.AccessToken}}})
		if err != nil {
			t.Fatal(err)
		}
		c := &wsClient{t: t, ws: ws}
		for _, p := range parts {
			c.write(p)
		}
		var resp struct{ Error string }
		if rec, err := c.tryNext(5 * time.Second); err != nil || json.Unmarshal(rec, &resp) != nil || resp.Error != "Handshake request is too large." {
			t.Errorf("%s: got %q %v", name, rec, err)
		}
		if got := closedWith(t, c); got != websocket.StatusMessageTooBig {
			t.Errorf("%s: close status %d", name, got)
		}
		ws.CloseNow()
	}
}

// Item 10: ttl=0 adds only the user's open connections (Azure), not a
// membership for later ones.
func TestRESTTTLZeroAddsOpenConnectionsOnly(t *testing.T) {
	t.Parallel()
	h := startHub(t, anonCfg())
	call := func(method, path string, want int) {
		t.Helper()
		if code, _, body := h.restCall(t, method, path, ""); code != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, code, body, want)
		}
	}
	call("PUT", "/api/hubs/chat/users/nobody/groups/g?api-version=2022-06-01&ttl=0", 200)
	call("HEAD", "/api/hubs/chat/users/nobody/groups/g?api-version=2022-06-01", 404)

	zed := clientToken(t, h, "chat", "zed", time.Hour)
	first := dial(t, zed, clientNegotiate(t, zed))
	call("PUT", "/api/v1/hubs/chat/groups/g/users/zed?ttl=0", 202)
	call("HEAD", "/api/hubs/chat/users/zed/groups/g?api-version=2022-06-01", 200)
	later := dial(t, zed, clientNegotiate(t, zed))
	if code, _, _ := h.restCall(t, "POST", "/api/hubs/chat/groups/g/:send?api-version=2022-06-01", `{"target":"g"}`); code != 202 {
		t.Fatal(code)
	}
	if got, _ := invocation(t, first.nextNonPing(5*time.Second)); got != "g" {
		t.Fatalf("first connection got %s", got)
	}
	// The later connection's first message is one sent after the group's:
	// it never got the group's.
	if code, _, _ := h.restCall(t, "POST", "/api/hubs/chat/connections/"+later.id+"/:send?api-version=2022-06-01", `{"target":"marker"}`); code != 202 {
		t.Fatal(code)
	}
	if got, _ := invocation(t, later.nextNonPing(5*time.Second)); got != "marker" {
		t.Fatalf("later connection got %s", got)
	}
	// Removing the user from the group removes its connections too.
	call("DELETE", "/api/hubs/chat/users/zed/groups/g?api-version=2022-06-01", 204)
	call("HEAD", "/api/hubs/chat/users/zed/groups/g?api-version=2022-06-01", 404)
}

// Item 10: the v1 routes answer what the v1 swagger says (v1.json: 200 or
// 404 for connection membership, 202 for user membership), and the
// 2022-06-01 ones what theirs says.
func TestRESTStatusCodesFollowTheSwagger(t *testing.T) {
	t.Parallel()
	h := startHub(t, anonCfg())
	c := h.connect(t, "chat", "")
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"PUT", "/api/v1/hubs/chat/groups/g/connections/" + c.id, 200},
		{"DELETE", "/api/v1/hubs/chat/groups/g/connections/" + c.id, 200},
		{"PUT", "/api/v1/hubs/chat/connections/" + c.id + "/groups/g", 200},
		{"DELETE", "/api/v1/hubs/chat/connections/" + c.id + "/groups/g", 200},
		{"PUT", "/api/v1/hubs/chat/groups/g/connections/nope", 404},
		{"PUT", "/api/v1/hubs/chat/users/u/groups/g", 202},
		{"GET", "/api/v1/hubs/chat/users/u/groups/g", 200},
		{"DELETE", "/api/v1/hubs/chat/users/u/groups/g", 202},
		{"DELETE", "/api/v1/hubs/chat/users/u/groups", 202},
		{"PUT", "/api/hubs/chat/groups/g/connections/" + c.id + "?api-version=2022-06-01", 200},
		{"DELETE", "/api/hubs/chat/groups/g/connections/" + c.id + "?api-version=2022-06-01", 200},
		{"PUT", "/api/hubs/chat/users/u/groups/g?api-version=2022-06-01", 200},
		{"DELETE", "/api/hubs/chat/users/u/groups/g?api-version=2022-06-01", 204},
		{"DELETE", "/api/hubs/chat/users/u/groups?api-version=2022-06-01", 204},
	} {
		if code, _, body := h.restCall(t, tc.method, tc.path, ""); code != tc.want {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, code, body, tc.want)
		}
	}
}
