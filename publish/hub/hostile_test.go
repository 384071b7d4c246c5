package hub

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/changecast/changecast/internal/testkit"
)

// hostileMessagePack are client messages (without their length prefix)
// whose headers declare far more than they hold, or that nest without
// end: a decoder that trusts them allocates gigabytes (issue 16 item 1:
// the 5-byte array one killed the process).
func hostileMessagePack() map[string][]byte {
	huge := []byte{0xff, 0xff, 0xff, 0xff}
	deep := append(bytes.Repeat([]byte{0x91}, 60_000), 0xc0)
	return map[string][]byte{
		"array of 2^32-1":             append([]byte{0xdd}, huge...),
		"map of 2^32-1":               append([]byte{0xdf}, huge...),
		"str of 2^32-1":               append([]byte{0xdb}, huge...),
		"bin of 2^32-1":               append([]byte{0xc6}, huge...),
		"ext of 2^32-1":               append(append([]byte{0xc9}, huge...), 1),
		"array16 of 65535":            {0xdc, 0xff, 0xff},
		"invocation, headers of 2^32": append([]byte{0x95, 0x01, 0xdf}, huge...),
		"ack, arguments of 2^32":      append([]byte{0x93, 0x08, 0x01, 0xdd}, huge...),
		"60000 nested arrays":         deep,
		"invocation, nested args":     append([]byte{0x95, 0x01, 0x80, 0xc0, 0xa1, 'x'}, deep...),
	}
}

// TestHostileMessagePackIsRefusedWithoutAllocating: each hostile message
// is a protocol error, found with next to no allocation.
func TestHostileMessagePackIsRefusedWithoutAllocating(t *testing.T) {
	for name, m := range hostileMessagePack() {
		var err error
		allocated := bytesAllocated(func() { _, err = (msgpackCodec{}).parse(m) })
		if err == nil {
			t.Errorf("%s: parsed", name)
		}
		if allocated > 64<<10 {
			t.Errorf("%s: %d bytes allocated to refuse %d bytes", name, allocated, len(m))
		}
	}
}

// bytesAllocated is what fn allocates (with whatever else runs meanwhile:
// an upper bound).
func bytesAllocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestHostileMessagesOnEveryTransport sends the hostile MessagePack
// messages through the real transports of a running hub (WebSockets and
// Long Polling after a MessagePack handshake; Server-Sent Events, which
// refuses MessagePack, gets them behind the handshake and hostile JSON
// after a JSON one): each connection gets a Close message with an error
// and ends, the hub allocates little doing it, and serves on. Not
// parallel: it measures the process's allocations.
func TestHostileMessagesOnEveryTransport(t *testing.T) {
	h := startHub(t, anonCfg(), WithPollTimeout(5*time.Second))
	frames := hostileMessagePack()
	// Warm up (the first connection allocates the server's pools).
	h.connect(t, "chat", "").ws.CloseNow()

	allocated := bytesAllocated(func() {
		for name, m := range frames {
			frame := frameBinary(m)
			if got := hostileWebSocket(t, h, frame); !isErrorClose(got) {
				t.Errorf("WebSockets, %s: last message %x, want a Close with an error", name, got)
			}
			if got := hostileLongPoll(t, h, frame); !isErrorClose(got) {
				t.Errorf("LongPolling, %s: last message %x, want a Close with an error", name, got)
			}
			// Behind a MessagePack handshake, which Server-Sent Events refuse.
			hs := `{"protocol":"messagepack","version":1}` + "\x1e"
			if got := hostileSSE(t, h, hs+string(frame)); !strings.Contains(got, `"error":"Cannot use the 'messagepack' protocol`) {
				t.Errorf("ServerSentEvents, %s: last message %q, want the handshake refused", name, got)
			}
		}
		for name, rec := range map[string]string{
			"60000 nested arrays":  strings.Repeat("[", 60_000) + "\x1e",
			"60000 nested objects": strings.Repeat(`{"a":`, 12_000) + "\x1e",
			"not an object":        `[1]` + "\x1e",
		} {
			hs := `{"protocol":"json","version":1}` + "\x1e"
			if got := hostileSSE(t, h, hs+rec); !strings.Contains(got, `"type":7,"error":"Connection closed with an error: invalid message."`) {
				t.Errorf("ServerSentEvents, JSON %s: last message %q, want a Close with an error", name, got)
			}
		}
	})
	t.Logf("allocated %d KB", allocated>>10)
	// Each connection costs some allocation (TLS-less HTTP, a WebSocket,
	// buffers); a decoder trusting the headers allocated gigabytes.
	if allocated > 32<<20 {
		t.Errorf("the hub and the test allocated %d MB for %d hostile messages", allocated>>20, 3*len(frames)+3)
	}
	testkit.Until(t, 10*time.Second, "every connection to end", func() bool { return h.reg.stats().Conns == 0 })
	// Still serving.
	c := h.connect(t, "chat", "")
	c.write(`{"type":6}` + "\x1e")
}

// isErrorClose reports whether b is the MessagePack Close message with an
// error (length prefix included).
func isErrorClose(b []byte) bool {
	msgs, _, err := split(msgpackCodec{}, b)
	if err != nil || len(msgs) != 1 {
		return false
	}
	var arr []any
	if msgpack.Unmarshal(msgs[0], &arr) != nil || len(arr) != 3 {
		return false
	}
	errMsg, _ := arr[1].(string)
	return arr[0] == int8(typeClose) && strings.Contains(errMsg, "invalid message") && arr[2] == false
}

// hostileWebSocket opens a MessagePack WebSocket connection, sends frame
// and returns the last message the hub sent before it closed the
// WebSocket with a policy violation.
func hostileWebSocket(t *testing.T, h *testHub, frame []byte) []byte {
	t.Helper()
	n := h.appNegotiate(t, "chat", "")
	cn := clientNegotiate(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(n.URL, "http")+"&id="+cn.ConnectionToken,
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + n.AccessToken}}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"protocol":"messagepack","version":1}`+"\x1e")); err != nil {
		t.Fatal(err)
	}
	if _, b, err := ws.Read(ctx); err != nil || string(b) != "{}\x1e" {
		t.Fatalf("handshake answer %q %v", b, err)
	}
	if err := ws.Write(ctx, websocket.MessageBinary, frame); err != nil {
		t.Fatal(err)
	}
	var last []byte
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			if code := websocket.CloseStatus(err); code != websocket.StatusPolicyViolation {
				t.Errorf("WebSocket closed with %d (%v), want %d", code, err, websocket.StatusPolicyViolation)
			}
			return last
		}
		if !bytes.Equal(b, mpPing) {
			last = b
		}
	}
}

// hostileLongPoll opens a MessagePack long-polling connection, posts
// frame and returns what the next poll gets; the poll after it finds the
// connection gone.
func hostileLongPoll(t *testing.T, h *testHub, frame []byte) []byte {
	t.Helper()
	n := h.appNegotiate(t, "chat", "")
	u := n.URL + "&id=" + clientNegotiate(t, n).ConnectionToken
	clientReq(t, "GET", u, n.AccessToken, "", nil)
	clientReq(t, "POST", u, n.AccessToken, `{"protocol":"messagepack","version":1}`+"\x1e", nil)
	if _, body := clientReq(t, "GET", u, n.AccessToken, "", nil); body != "{}\x1e" {
		t.Fatalf("handshake answer %q", body)
	}
	if resp, body := clientReq(t, "POST", u, n.AccessToken, string(frame), nil); resp.StatusCode != 200 {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
	_, last := clientReq(t, "GET", u, n.AccessToken, "", nil)
	if resp, _ := clientReq(t, "GET", u, n.AccessToken, "", nil); resp.StatusCode != 204 && resp.StatusCode != 404 {
		t.Errorf("poll after the Close: %d, want the connection gone", resp.StatusCode)
	}
	return []byte(last)
}

// hostileSSE opens a Server-Sent Events connection, posts body and returns
// the last event the stream carries before the hub ends it.
func hostileSSE(t *testing.T, h *testHub, body string) string {
	t.Helper()
	n := h.appNegotiate(t, "chat", "")
	u := n.URL + "&id=" + clientNegotiate(t, n).ConnectionToken
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, next := sseStream(t, ctx, u, n.AccessToken)
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	if r, _ := clientReq(t, "POST", u, n.AccessToken, body, nil); r.StatusCode != 200 {
		t.Fatalf("POST: %d", r.StatusCode)
	}
	var last string
	for {
		ev, err := next()
		if err == io.EOF {
			return last
		}
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		if ev != "{}\x1e" && ev != string(pingFrame) {
			last = ev
		}
	}
}

// TestReceiveInTinyPieces: a message that arrives a byte at a time (one
// WebSocket message or POST each) costs allocation and scanning in
// proportion to its size, not to its size squared: each piece must not
// copy, or search for a separator in, what arrived before.
func TestReceiveInTinyPieces(t *testing.T) {
	msgpackInv, _ := msgpack.Marshal([]any{typeInvocation, map[string]any{}, "7", "x", []any{strings.Repeat("a", 30_000)}})
	for name, c := range map[string]struct {
		kind      transport
		handshake string
		message   []byte
	}{
		"JSON": {transportServerSentEvents, `{"protocol":"json","version":1}`,
			[]byte(`{"type":1,"invocationId":"7","target":"x","arguments":["` + strings.Repeat("a", 30_000) + `"]}` + "\x1e")},
		"MessagePack": {transportLongPolling, `{"protocol":"messagepack","version":1}`, frameBinary(msgpackInv)},
	} {
		conn := fuzzConn(c.kind)
		in := append([]byte(c.handshake+strings.Repeat(" ", 20_000)+"\x1e"), c.message...)
		a := bytesAllocated(func() {
			for i := range in {
				if err := conn.receive(in[i:i+1], &options{}); err != nil {
					t.Fatalf("%s: byte %d: %v", name, i, err)
				}
			}
		})
		frames, _, _, _ := conn.q.take(0, nil)
		if len(frames) != 2 || !bytes.Contains(frames[1], []byte("7")) {
			t.Errorf("%s: queued %q, want the handshake answer and a completion for invocation 7", name, frames)
		}
		if a > 4<<20 {
			t.Errorf("%s: %d MB allocated receiving %d bytes one at a time", name, a>>20, len(in))
		}
		conn.cancel(nil)
	}
}

// TestLongExcludedList: a send's excluded ids (a REST caller's list, as
// long as a URL allows) leave out exactly those connections, looked up
// in a set once the list is long (before, every connection was compared
// with every id: connections times ids under the registry's lock).
func TestLongExcludedList(t *testing.T) {
	reg := newRegistry([]string{"chat"}, limits{maxConns: 100, maxPerUser: 100, maxGroupsPerUser: 100})
	var excluded []string
	for i := range 20 {
		c := fuzzConn(transportWebSockets)
		c.id, c.token = "c"+strconv.Itoa(i), "t"+strconv.Itoa(i)
		if reg.open(c) != nil || !reg.add(c) {
			t.Fatal("open")
		}
		if i%2 == 0 {
			excluded = append(excluded, c.id, "gone"+c.id)
		}
		c.cancel(nil)
	}
	for _, n := range []int{2, len(excluded)} {
		got := map[string]bool{}
		reg.each("chat", scope{kind: scopeAll, excluded: excluded[:n]}, time.Now(), func(c *conn) { got[c.id] = true })
		for i := range 20 {
			id := "c" + strconv.Itoa(i)
			if want := !slices.Contains(excluded[:n], id); got[id] != want {
				t.Errorf("%d excluded ids: %s reached %v, want %v", n, id, got[id], want)
			}
		}
	}
}
