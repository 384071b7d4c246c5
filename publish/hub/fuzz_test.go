package hub

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/changecast/changecast/publish/signalr"
)

// Fuzz targets of the parsers of client bytes (issue 16 item 8). Their
// seeds run with every go test; `go test -fuzz FuzzX ./publish/hub`
// explores. Besides "no panic" they check what matters of each parser:
// bounded allocation relative to the input, refusal rather than partial
// state, and agreement with a reference where one exists.

// allocBound is what parsing n bytes may allocate: a small multiple of the
// input, never what a header declares.
func allocBound(n int) uint64 { return uint64(8*n) + 64<<10 }

// FuzzMessagePackParse: any bytes parse to a message or a protocol error,
// allocating at most a small multiple of their length; a message the hub
// accepts decodes with a general MessagePack decoder to the same type,
// invocation id and sequence id.
func FuzzMessagePackParse(f *testing.F) {
	for _, m := range [][]any{{typePing}, {typeAck, 7}, {typeSequence, uint64(math.MaxInt64)}, {typeInvocation, map[string]any{"h": "v"}, "9", "x", []any{1.5, nil, true, []byte{1}, map[string]any{"a": []any{-1, "s"}}}},
		{typeStreamInvocation, map[string]any{}, nil, "x", []any{}, []any{"1"}}, {typeCompletion, map[string]any{}, "1", 3, "r"}, {typeClose, "bye", true}, {99, "x"}} {
		b, _ := msgpack.Marshal(m)
		f.Add(b)
	}
	for _, m := range hostileMessagePack() {
		f.Add(m)
	}
	f.Add(append(bytes.Repeat([]byte{0x91}, maxMessageDepth), 0x06))
	f.Add(append(bytes.Repeat([]byte{0x91}, maxMessageDepth+1), 0x06))
	f.Fuzz(func(t *testing.T, in []byte) {
		var m message
		var err error
		if a := bytesAllocated(func() { m, err = parseMessagePack(in) }); a > allocBound(len(in)) {
			t.Fatalf("%d bytes allocated parsing %d", a, len(in))
		}
		if err != nil {
			return
		}
		// Accepted: every length was checked, so a general decoder is safe.
		var arr []any
		if msgpack.Unmarshal(in, &arr) != nil {
			return // e.g. an ext type it does not know; the hub walks over it
		}
		typ, ok := anyInt(arr[0])
		if !ok || int(typ) != m.Type {
			t.Fatalf("type %d, the decoder says %#v", m.Type, arr[0])
		}
		var id string
		if len(arr) > 2 && (m.Type == typeInvocation || m.Type == typeStreamInvocation) {
			id, _ = arr[2].(string)
		}
		var seq int64
		if m.Type == typeAck || m.Type == typeSequence {
			seq, _ = anyInt(arr[1])
		}
		if m.InvocationID != id || m.SequenceID != uint64(seq) {
			t.Fatalf("%+v, the decoder says %#v", m, arr)
		}
	})
}

// TestMessageDepthBound: arrays and maps (objects) nest up to
// maxMessageDepth levels, the message's own included, and no deeper, in
// both protocols.
func TestMessageDepthBound(t *testing.T) {
	nest := func(levels int) []byte { // [6, [[…[]…]]] with levels arrays in all
		return append([]byte{0x92, 0x06}, append(bytes.Repeat([]byte{0x91}, levels-2), 0x90)...)
	}
	if _, err := parseMessagePack(nest(maxMessageDepth)); err != nil {
		t.Fatalf("MessagePack: %d levels refused: %v", maxMessageDepth, err)
	}
	if _, err := parseMessagePack(nest(maxMessageDepth + 1)); err != errTooDeep {
		t.Fatalf("MessagePack: %d levels: %v, want %v", maxMessageDepth+1, err, errTooDeep)
	}
	if _, err := parseMessagePack([]byte{0x91, 0x06, 0xc0}); err == nil {
		t.Fatal("MessagePack: bytes after the message accepted")
	}
	jsonNest := func(levels int) []byte { // {"type":6,"x":"[{",  "a":[[…]]}
		return []byte(`{"type":6,"x":"[{\"[","a":` + strings.Repeat("[", levels-1) + strings.Repeat("]", levels-1) + `}`)
	}
	if _, err := parseMessage(jsonNest(maxMessageDepth)); err != nil {
		t.Fatalf("JSON: %d levels refused: %v", maxMessageDepth, err)
	}
	if _, err := parseMessage(jsonNest(maxMessageDepth + 1)); err != errTooDeep {
		t.Fatalf("JSON: %d levels: %v, want %v", maxMessageDepth+1, err, errTooDeep)
	}
}

func anyInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint64:
		return int64(x), x <= math.MaxInt64
	}
	return 0, false
}

// fuzzConn is a connection of kind on no transport, as a POST of a
// Server-Sent Events or long-polling client reaches it.
func fuzzConn(kind transport) *conn {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &conn{id: "c", token: "t", hub: "chat", user: "u", kind: kind, q: newSendQueue(64 << 20), ctx: ctx, cancel: cancel,
		baseLog: slog.New(slog.DiscardHandler), created: time.Now(), onHandshake: func(*conn) bool { return true }}
}

// FuzzReceive: the bodies a Server-Sent Events or long-polling client
// POSTs (the handshake, then records or length-prefixed messages), cut in
// two POSTs at any point, are read with bounded allocation; what the
// connection keeps of an incomplete message is bounded; a refusal closes
// the connection's queue (its last message queued) and nothing more is
// read.
func FuzzReceive(f *testing.F) {
	ping, _ := msgpack.Marshal([]any{typePing})
	inv, _ := msgpack.Marshal([]any{typeInvocation, map[string]any{}, "1", "x", []any{}})
	for _, c := range []struct {
		body string
		cut  uint16
	}{
		{`{"protocol":"json","version":1}` + "\x1e" + `{"type":6}` + "\x1e" + `{"type":1,"invocationId":"1","target":"x","arguments":[]}` + "\x1e", 20},
		{`{"protocol":"messagepack","version":1}` + "\x1e" + string(frameBinary(ping)) + string(frameBinary(inv)), 45},
		{`{"protocol":"messagepack","version":1}` + "\x1e" + string(frameBinary(hostileMessagePack()["map of 2^32-1"])), 40},
		{`{"protocol":"json","version":1}` + "\x1e" + strings.Repeat("[", 20_000) + "\x1e", 1000},
		{`{"protocol":"json","version":2}` + "\x1e" + `{"type":8,"sequenceId":1}` + "\x1e" + `{"type":7}` + "\x1e", 0},
		{`{"protocol":"xml","version":1}` + "\x1e", 3},
	} {
		f.Add([]byte(c.body), c.cut, false)
		f.Add([]byte(c.body), c.cut, true)
	}
	f.Fuzz(func(t *testing.T, body []byte, cut uint16, longPolling bool) {
		kind := transportServerSentEvents
		if longPolling {
			kind = transportLongPolling
		}
		c := fuzzConn(kind)
		defer c.cancel(nil)
		at := min(int(cut), len(body))
		var err error
		a := bytesAllocated(func() {
			if err = c.receive(body[:at], &options{}); err == nil {
				err = c.receive(body[at:], &options{})
			}
		})
		// What the hub answers (a completion for each invocation) is
		// bounded by the send queue; beyond it, by the input.
		c.q.mu.Lock()
		answered := c.q.bytes
		c.q.mu.Unlock()
		if a > allocBound(len(body))+8*uint64(answered) {
			t.Fatalf("%d bytes allocated receiving %d and answering %d", a, len(body), answered)
		}
		c.mu.Lock()
		kept := len(c.inbuf)
		c.mu.Unlock()
		if kept > maxReceive {
			t.Fatalf("%d bytes of an incomplete message kept", kept)
		}
		c.q.mu.Lock()
		closed := c.q.closed
		c.q.mu.Unlock()
		if (err != nil) != closed {
			t.Fatalf("receive: %v, queue closed: %v", err, closed)
		}
	})
}

// fuzzServer is a hub served in process (no listener), for the request
// fuzz targets.
func fuzzServer(f *testing.F) *Server {
	cfg := anonCfg()
	cfg.Negotiate.Groups = []string{"lobby", "g-{claims.sub}"}
	s, err := New(cfg, WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		f.Fatal(err)
	}
	return s
}

// serveFuzz serves one request built from fuzzed parts; a part that makes
// no valid request is not the handler's input, so it is skipped.
func serveFuzz(t *testing.T, s *Server, method, target, auth string, body []byte) int {
	req, err := http.NewRequest(method, "http://"+inProcessHost+target, bytes.NewReader(body))
	if err != nil || req.URL.Host != inProcessHost {
		t.Skip()
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	return rec.Code
}

// FuzzNegotiateRequest: the app and client negotiate endpoints answer any
// query and Authorization header with 2xx or 4xx, never a server error.
func FuzzNegotiateRequest(f *testing.F) {
	s := fuzzServer(f)
	good, _ := signAccessToken(s.key, "http://"+inProcessHost+"/client/?hub=chat", "u", time.Hour)
	f.Add(false, "hub=chat&negotiateVersion=1", "")
	f.Add(false, "hub=CHAT&hub=chat", "Bearer x.y.z")
	f.Add(false, "hub=no%20such", "Basic abc")
	f.Add(true, "hub=chat&negotiateVersion=1&useStatefulReconnect=true", "Bearer "+good)
	f.Add(true, "hub=chat&negotiateVersion=-99999999999999999999", "Bearer "+good)
	f.Add(true, "hub=chat", "Bearer "+good[:len(good)-2])
	f.Fuzz(func(t *testing.T, client bool, query, auth string) {
		path := "/api/negotiate?"
		if client {
			path = "/client/negotiate?"
		}
		if code := serveFuzz(t, s, "POST", path+query, auth, nil); code >= 500 {
			t.Fatalf("POST %s%s (Authorization %q): %d", path, query, auth, code)
		}
	})
}

// FuzzRESTRequest: any route, query and body of the REST API, with a valid
// token for that route, is answered with 2xx or 4xx, never a server error.
func FuzzRESTRequest(f *testing.F) {
	s := fuzzServer(f)
	for _, c := range [][2]string{
		{"/api/v1/hubs/chat", `{"target":"x","arguments":[1,{"a":[]}]}`},
		{"/api/hubs/chat/groups/g/:send?api-version=2022-06-01&excluded=a&excluded=b", `{"Target":"x"}`},
		{"/api/hubs/chat/users/u/groups/g?api-version=2022-06-01&ttl=99999999999", ""},
		{"/api/hubs/chat/groups/g/connections?api-version=2024-12-01&maxpagesize=0&top=-1&continuationToken=eyJhIjoieCIsImwiOjF9", ""},
		{"/api/hubs/chat/:generateToken?api-version=2024-12-01&minutesToExpire=1e9&userId=a%2Fb", ""},
		{"/api/hubs/chat/connections/c/:send?api-version=1999-01-01", "[[[[[["},
		{"/api/v1/hubs/chat/groups/%20", "{}"},
	} {
		f.Add("POST", c[0], []byte(c[1]))
		f.Add("PUT", c[0], []byte(c[1]))
		f.Add("GET", c[0], []byte(c[1]))
	}
	f.Fuzz(func(t *testing.T, method, target string, body []byte) {
		if !strings.HasPrefix(target, "/") {
			target = "/" + target
		}
		path, _, _ := strings.Cut(target, "?")
		tok, err := signalr.SignAccessToken(s.key, "http://"+inProcessHost+path, "", time.Minute, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if code := serveFuzz(t, s, method, target, "Bearer "+tok, body); code >= 500 {
			t.Fatalf("%s %s %q: %d", method, target, body, code)
		}
	})
}

// FuzzAccessToken: a token signed with the key for any aud is accepted
// exactly when aud names this endpoint (audienceMatches); any other
// string is refused without a panic.
func FuzzAccessToken(f *testing.F) {
	key := []byte(strings.Repeat("k", 44))
	want := endpoint{scheme: "http", host: "hub.test:8080"}.audience("/client")
	want.hub = "chat"
	for _, aud := range []string{"http://hub.test:8080/client/?hub=chat", "http://HUB.test/client?hub=Chat&x=1", "http://hub.test:8080/client/?hub=chat&hub=x",
		"http://user@hub.test:8080/client/?hub=chat", "http://hub.test:8080/%63lient/?hub=chat", "http://hub.test:8080/client/?hub=chat#f", "%zz"} {
		f.Add(aud, "")
	}
	f.Add("", "eyJhbGciOiJub25lIn0.eyJhdWQiOiJ4In0.")
	f.Add("", "a.b.c")
	f.Fuzz(func(t *testing.T, aud, raw string) {
		if raw != "" {
			if _, err := verifyAccessToken(raw, key, want, time.Hour); err == nil {
				t.Fatalf("unsigned %q accepted", raw)
			}
			return
		}
		tok, err := signAccessToken(string(key), aud, "u", time.Minute)
		if err != nil {
			t.Skip()
		}
		_, err = verifyAccessToken(tok, key, want, time.Hour)
		if match := audienceMatches(aud, want); (err == nil) != match {
			t.Fatalf("aud %q: verify %v, matches %v", aud, err, match)
		}
		if err == nil {
			u, perr := url.Parse(aud)
			if perr != nil || !strings.EqualFold(u.Hostname(), "hub.test") || !strings.EqualFold(u.Scheme, "http") {
				t.Fatalf("aud %q accepted for another endpoint", aud)
			}
		}
	})
}

// FuzzPageToken: a continuationToken is refused or read back as the same
// position.
func FuzzPageToken(f *testing.F) {
	f.Add(pageToken{After: "c1", Left: -1}.String())
	f.Add(pageToken{After: "x", Left: 5}.String())
	f.Add("eyJhIjoiIiwibCI6MH0")
	f.Add("!!")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parsePageToken(s)
		if err != nil {
			return
		}
		if p.After == "" || p.Left == 0 || p.Left < -1 {
			t.Fatalf("accepted %+v", p)
		}
		if q, err := parsePageToken(p.String()); err != nil || q != p {
			t.Fatalf("%+v does not read back: %+v %v", p, q, err)
		}
	})
}
