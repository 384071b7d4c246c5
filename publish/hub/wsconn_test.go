package hub

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/changecast/changecast/publish/signalr"
	"github.com/gobwas/ws"
)

// clientFrame is a client frame as RFC 6455 wants it: masked (with a
// fixed key; the hub must unmask whatever key it is), or not when masked
// is false.
func clientFrame(op ws.OpCode, fin, masked bool, payload []byte) []byte {
	b := []byte{byte(op)}
	if fin {
		b[0] |= 0x80
	}
	var mbit byte
	if masked {
		mbit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b = append(b, mbit|byte(n))
	case n <= 0xffff:
		b = append(b, mbit|126, byte(n>>8), byte(n))
	default:
		b = append(b, mbit|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	p := bytes.Clone(payload)
	if masked {
		key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
		b = append(b, key[:]...)
		ws.Cipher(p, key, 0)
	}
	return append(b, p...)
}

// FuzzWebSocketFrames: whatever bytes a client sends, the frame reader
// returns messages no larger than maxReceive, answers pings with their own
// payload, and ends with an error when the bytes end (it never loops or
// trusts a declared length).
func FuzzWebSocketFrames(f *testing.F) {
	hs := []byte(`{"protocol":"json","version":1}` + "\x1e")
	f.Add(clientFrame(ws.OpText, true, true, hs))
	f.Add(append(clientFrame(ws.OpText, false, true, hs[:5]), append(clientFrame(ws.OpPing, true, true, []byte("hi")), clientFrame(ws.OpContinuation, true, true, hs[5:])...)...))
	f.Add(clientFrame(ws.OpClose, true, true, []byte{0x03, 0xe8, 'b', 'y', 'e'}))
	f.Add(clientFrame(ws.OpText, true, false, hs))                          // unmasked
	f.Add(clientFrame(ws.OpBinary, true, true, make([]byte, maxReceive+1))) // too large
	f.Add([]byte{0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4})
	f.Add([]byte{0x81, 0xfe, 0xff})
	f.Add(clientFrame(ws.OpContinuation, true, true, hs))
	f.Add(clientFrame(ws.OpPing, false, true, []byte("x")))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := frameReader{src: bytes.NewReader(data)}
		var pongs int
		pong := func(p []byte) error {
			if len(p) > ws.MaxControlFramePayloadSize {
				t.Fatalf("pong of %d bytes", len(p))
			}
			pongs++
			return nil
		}
		for i := 0; ; i++ {
			if i > len(data) {
				t.Fatalf("more messages than bytes")
			}
			msg, _, err := fr.next(nil, pong)
			if len(msg) > maxReceive {
				t.Fatalf("message of %d bytes", len(msg))
			}
			if err != nil {
				break
			}
		}
		fr.r = fr.w
		fr.release()
		if fr.bufp != nil {
			t.Fatal("buffer kept after the reader stopped")
		}
	})
}

func TestFrameReaderReassemblesAndPongs(t *testing.T) {
	hs := []byte(`{"protocol":"json","version":1}` + "\x1e")
	in := clientFrame(ws.OpText, false, true, hs[:7])
	in = append(in, clientFrame(ws.OpPing, true, true, []byte("are you there"))...)
	in = append(in, clientFrame(ws.OpContinuation, false, true, hs[7:20])...)
	in = append(in, clientFrame(ws.OpContinuation, true, true, hs[20:])...)
	big := bytes.Repeat([]byte("b"), 70_000) // a 64-bit length, in many reads
	in = append(in, clientFrame(ws.OpBinary, true, true, big[:maxReceive])...)
	fr := frameReader{src: iotestHalf(bytes.NewReader(in))}
	var pongs []string
	msg, binary, err := fr.next(nil, func(p []byte) error { pongs = append(pongs, string(p)); return nil })
	if err != nil || !bytes.Equal(msg, hs) || binary {
		t.Fatalf("first message %q binary=%v err=%v", msg, binary, err)
	}
	if len(pongs) != 1 || pongs[0] != "are you there" {
		t.Fatalf("pongs %q", pongs)
	}
	msg, binary, err = fr.next(nil, nil)
	if err != nil || len(msg) != maxReceive || !binary {
		t.Fatalf("second message: %d bytes binary=%v err=%v", len(msg), binary, err)
	}
	if _, _, err := fr.next(nil, nil); !errors.Is(err, io.EOF) {
		t.Fatalf("at the end: %v", err)
	}
	if fr.bufp != nil {
		t.Fatal("a buffer is held while idle")
	}
}

func TestFrameReaderRefuses(t *testing.T) {
	for name, c := range map[string]struct {
		in   []byte
		want error
	}{
		"unmasked":            {clientFrame(ws.OpText, true, false, []byte("x")), ws.ErrProtocolMaskRequired},
		"continuation first":  {clientFrame(ws.OpContinuation, true, true, []byte("x")), ws.ErrProtocolContinuationUnexpected},
		"fragmented ping":     {clientFrame(ws.OpPing, false, true, []byte("x")), ws.ErrProtocolControlNotFinal},
		"too large, declared": {[]byte{0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4}, errTooLarge},
		"length with the MSB": {[]byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}, ws.ProtocolError(ws.ErrHeaderLengthMSB.Error())},
		"reserved opcode":     {clientFrame(ws.OpCode(3), true, true, []byte("x")), ws.ErrProtocolOpCodeReserved},
		"rsv bit":             {append([]byte{0xc1}, clientFrame(ws.OpText, true, true, []byte("x"))[1:]...), ws.ErrProtocolNonZeroRsv},
	} {
		fr := frameReader{src: bytes.NewReader(c.in)}
		if _, _, err := fr.next(nil, nil); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}

// TestFrameReaderGrowsAsBytesArrive: a frame that declares the whole
// 64 KB and then stops gets no 64 KB buffer: the message grows with what
// arrives.
func TestFrameReaderGrowsAsBytesArrive(t *testing.T) {
	whole := clientFrame(ws.OpBinary, true, true, make([]byte, maxReceive))
	fr := frameReader{src: bytes.NewReader(whole[:14+100])} // header, mask, 100 bytes
	msg, _, err := fr.next(nil, nil)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err %v, want an unexpected EOF", err)
	}
	if cap(msg) > 2*readBufSize {
		t.Fatalf("%d bytes allocated for 100 that arrived", cap(msg))
	}
}

// iotestHalf reads at most 1,000 bytes at a time: frames arrive in pieces.
func iotestHalf(r io.Reader) io.Reader { return &piecewise{r} }

type piecewise struct{ r io.Reader }

func (p *piecewise) Read(b []byte) (int, error) { return p.r.Read(b[:min(len(b), 1000)]) }

// rawWebSocket opens a WebSocket to the hub by hand (no library between
// the test and the bytes) for a negotiated connection.
func rawWebSocket(t *testing.T, h *testHub) (net.Conn, *bufio.Reader) {
	t.Helper()
	n := h.appNegotiate(t, "chat", "")
	cn := clientNegotiate(t, n)
	u, err := url.Parse(n.URL + "&id=" + cn.ConnectionToken)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nAuthorization: Bearer " + n.AccessToken +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	// The handshake comes in the same write as the upgrade request: the
	// hub must not lose what net/http read past the request.
	if _, err := nc.Write(append([]byte(req), clientFrame(ws.OpText, true, true, []byte(`{"protocol":"json","version":1}`+"\x1e"))...)); err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	if op, p := readServerFrame(t, br); op != ws.OpText || string(p) != "{}\x1e" {
		t.Fatalf("handshake answer %v %q", op, p)
	}
	return nc, br
}

// readServerFrame reads one frame the hub sent (unmasked, final).
func readServerFrame(t *testing.T, br *bufio.Reader) (ws.OpCode, []byte) {
	t.Helper()
	h, err := ws.ReadHeader(br)
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	if h.Masked || !h.Fin || h.Rsv != 0 {
		t.Fatalf("server frame header %+v", h)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(br, p); err != nil {
		t.Fatal(err)
	}
	return h.OpCode, p
}

func TestWebSocketPingAndProtocolError(t *testing.T) {
	h := startHub(t, anonCfg())
	nc, br := rawWebSocket(t, h)
	nc.Write(clientFrame(ws.OpPing, true, true, []byte("ping me")))
	if op, p := readServerFrame(t, br); op != ws.OpPong || string(p) != "ping me" {
		t.Fatalf("pong: %v %q", op, p)
	}
	// An unmasked frame breaks RFC 6455: a Close with 1002, then the
	// hub closes the socket.
	nc.Write(clientFrame(ws.OpText, true, false, []byte(`{"type":6}`+"\x1e")))
	for {
		op, p := readServerFrame(t, br)
		if op == ws.OpText && strings.Contains(string(p), `"type":6`) {
			continue // a keep-alive ping may come first
		}
		if op != ws.OpClose || len(p) < 2 || ws.StatusCode(binary.BigEndian.Uint16(p)) != ws.StatusProtocolError {
			t.Fatalf("want Close 1002, got %v %q", op, p)
		}
		break
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("socket still open after the Close")
	}
}

func TestWebSocketCloseHandshake(t *testing.T) {
	h := startHub(t, anonCfg())
	nc, br := rawWebSocket(t, h)
	// The client closes: the hub answers with its own Close frame before
	// it closes the socket.
	nc.Write(clientFrame(ws.OpClose, true, true, []byte{0x03, 0xe8}))
	op, p := readServerFrame(t, br)
	if op != ws.OpClose || len(p) < 2 || ws.StatusCode(binary.BigEndian.Uint16(p)) != ws.StatusNormalClosure {
		t.Fatalf("want Close 1000, got %v %q", op, p)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("socket still open after the Close")
	}
}

// TestRESTTokenCache: a REST token verified once is taken again without
// parsing, but only for the URL it names and until it expires; a token
// that failed is never kept.
func TestRESTTokenCache(t *testing.T) {
	key := []byte("k")
	ep := endpoint{scheme: "http", host: "hub.test"}
	groupA, groupB := ep.audience("/api/v1/hubs/h/groups/a"), ep.audience("/api/v1/hubs/h/groups/b")
	tok, err := signalr.SignAccessToken(string(key), "http://hub.test/api/v1/hubs/h/groups/a", "", 2*time.Second, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var tc tokenCache
	for i := range 2 {
		if err := tc.verify(tok, key, groupA, time.Hour); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if err := tc.verify(tok, key, groupB, time.Hour); err == nil {
			t.Fatalf("call %d: a token for group a was taken for group b", i)
		}
	}
	if len(tc.m) != 1 {
		t.Fatalf("%d tokens kept, want 1", len(tc.m))
	}
	bad, _ := signalr.SignAccessToken("wrong", "http://hub.test/api/v1/hubs/h/groups/a", "", time.Minute, time.Now())
	if err := tc.verify(bad, key, groupA, time.Hour); err == nil || len(tc.m) != 1 {
		t.Fatalf("a token signed with another key: %v, %d kept", err, len(tc.m))
	}
	// Kept, but expired (past the leeway): refused.
	expired, _ := signalr.SignAccessToken(string(key), "http://hub.test/api/v1/hubs/h/groups/a", "", -time.Hour, time.Now())
	tc.m[expired] = verifiedToken{exp: time.Now().Add(-tokenLeeway - time.Second), auds: tc.m[tok].auds}
	if err := tc.verify(expired, key, groupA, time.Hour); err == nil {
		t.Fatal("an expired token was taken from the cache")
	}
}

// TestQueryValues: the same values as url.ParseQuery for every key.
func TestQueryValues(t *testing.T) {
	for _, raw := range []string{
		"api-version=2022-06-01&excluded=a&excluded=b%2Fc&application=app",
		"ex%63luded=x&excluded=y+z&bad=%zz&excluded=%zz&semi=1;2&excluded",
		"", "&&=&excluded=&=x",
	} {
		r := &http.Request{URL: &url.URL{RawQuery: raw}}
		want, _ := url.ParseQuery(raw)
		for _, k := range []string{"api-version", "excluded", "application", "bad", "semi", ""} {
			got := queryValues(r, k)
			if len(got) != len(want[k]) {
				t.Fatalf("%q %q: %q, want %q", raw, k, got, want[k])
			}
			for i := range got {
				if got[i] != want[k][i] {
					t.Fatalf("%q %q: %q, want %q", raw, k, got, want[k])
				}
			}
		}
	}
}

// FuzzQueryValues: for any query a caller sends, queryValues gives every
// key what url.ParseQuery gives it.
func FuzzQueryValues(f *testing.F) {
	f.Add("api-version=2022-06-01&excluded=a&excluded=b%2Fc", "excluded")
	f.Add("ex%63luded=x&excluded=y+z&bad=%zz&semi=1;2&&=", "excluded")
	f.Add("a=1&a&a=&%61=2", "a")
	f.Fuzz(func(t *testing.T, raw, key string) {
		want, _ := url.ParseQuery(raw)
		got := queryValues(&http.Request{URL: &url.URL{RawQuery: raw}}, key)
		if len(got) != len(want[key]) {
			t.Fatalf("%q %q: %q, want %q", raw, key, got, want[key])
		}
		for i := range got {
			if got[i] != want[key][i] {
				t.Fatalf("%q %q: %q, want %q", raw, key, got, want[key])
			}
		}
	})
}
