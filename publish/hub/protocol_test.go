package hub

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseHandshake(t *testing.T) {
	for _, tc := range []struct {
		in, rest, err string
		proto         string
		version       int
	}{
		{in: `{"protocol":"json","version":1}` + "\x1e", rest: ""},
		{in: `{"version":1,"protocol":"json","extra":true}` + "\x1e" + `{"type":6}` + "\x1e", rest: `{"type":6}` + "\x1e"},
		{in: `{"protocol":"json","version":1}`, err: errIncomplete.Error()},
		{in: `{"protocol":"json"}` + "\x1e", err: "Handshake request is missing the version."},
		{in: `{"protocol":"json","version":"1"}` + "\x1e", err: "Handshake request is not a JSON object."},
		{in: `{"protocol":"json","version":0}` + "\x1e", err: "The server does not support version 0 of the 'json' protocol."},
		{in: `{"protocol":"messagepack","version":1}` + "\x1e", rest: "", proto: "messagepack"},
		{in: `{"protocol":"json","version":2}` + "\x1e", rest: "", version: 2},
		{in: `{"protocol":"json","version":3}` + "\x1e", err: "The server does not support version 3 of the 'json' protocol."},
		{in: `{"protocol":"xml","version":1}` + "\x1e", err: "Requested protocol 'xml' is not available."},
		{in: "\x1e", err: "Handshake request is not a JSON object."},
		{in: `{"protocol":"json","version":1,"x":` + strings.Repeat("[", maxMessageDepth) + strings.Repeat("]", maxMessageDepth) + "}\x1e", err: "Handshake request nests too deep."},
		{in: `{"protocol":"json","version":1,"x":` + strings.Repeat("[", maxMessageDepth-1) + strings.Repeat("]", maxMessageDepth-1) + "}\x1e", rest: ""},
	} {
		h, rest, err := parseHandshake([]byte(tc.in))
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if tc.proto == "" {
			tc.proto = "json"
		}
		if tc.version == 0 {
			tc.version = 1
		}
		if err != nil || h.Protocol != tc.proto || h.Version != tc.version || string(rest) != tc.rest {
			t.Errorf("%q: %+v %q %v", tc.in, h, rest, err)
		}
	}
}

func TestSplitAndParseMessages(t *testing.T) {
	recs, rest := splitRecords([]byte(`{"type":6}` + "\x1e" + `{"type":1,"invocationId":"3","target":"x","arguments":[]}` + "\x1e" + `{"type":`))
	if len(recs) != 2 || string(rest) != `{"type":` {
		t.Fatalf("%q %q", recs, rest)
	}
	if m, err := parseMessage(recs[1]); err != nil || m.Type != typeInvocation || m.InvocationID != "3" {
		t.Fatalf("%+v %v", m, err)
	}
	if m, err := parseMessage([]byte(`{"type":42}`)); err != nil || m.Type != 42 {
		t.Fatalf("unknown type must parse: %+v %v", m, err)
	}
	for _, bad := range []string{``, `{}`, `[]`, `{"type":"1"}`, `nul`} {
		if _, err := parseMessage([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestEncoders(t *testing.T) {
	got := appendInvocation(nil, "ch\"anges", []json.RawMessage{json.RawMessage(`{"a":[1,2]}`), nil})
	if string(got) != `{"type":1,"target":"ch\"anges","arguments":[{"a":[1,2]},null]}`+"\x1e" {
		t.Fatalf("%s", got)
	}
	if got := closeFrame("", false); string(got) != `{"type":7}`+"\x1e" {
		t.Fatalf("%s", got)
	}
	if got := closeFrame("x", true); string(got) != `{"type":7,"error":"x","allowReconnect":true}`+"\x1e" {
		t.Fatalf("%s", got)
	}
	if got := handshakeError("no \x1e here"); bytes.Count(got, []byte{recordSeparator}) != 1 {
		t.Fatalf("separator inside a record: %q", got)
	}
}

// FuzzHandshake: any input either parses to JSON or MessagePack, version 1
// or 2, with a tail that is a
// suffix of the input, or fails; the error answer is always one record.
func FuzzHandshake(f *testing.F) {
	f.Add([]byte(`{"protocol":"json","version":1}` + "\x1e"))
	f.Add([]byte(`{"protocol":"json","version":1}` + "\x1e" + `{"type":6}` + "\x1e"))
	f.Add([]byte(`{"protocol":"messagepack","version":1}` + "\x1e"))
	f.Add([]byte("\x1e\x1e"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var h handshake
		var rest []byte
		var err error
		if a := bytesAllocated(func() { h, rest, err = parseHandshake(in) }); a > allocBound(len(in)) {
			t.Fatalf("%d bytes allocated parsing %d", a, len(in))
		}
		switch {
		case errors.Is(err, errIncomplete):
			if bytes.IndexByte(in, recordSeparator) >= 0 {
				t.Fatal("incomplete with a separator")
			}
		case err != nil:
			ans := handshakeError(err.Error())
			if bytes.IndexByte(ans, recordSeparator) != len(ans)-1 || !json.Valid(ans[:len(ans)-1]) {
				t.Fatalf("bad error answer %q", ans)
			}
		default:
			if (h.Protocol != "json" && h.Protocol != "messagepack") || h.Version < 1 || h.Version > 2 || !bytes.HasSuffix(in, rest) {
				t.Fatalf("%+v %q", h, rest)
			}
		}
	})
}

// FuzzRecords: splitting never loses or invents bytes, and parsing any
// record never panics and allocates at most a small multiple of it; a
// parsed record is a JSON object nesting at most maxMessageDepth levels.
func FuzzRecords(f *testing.F) {
	f.Add([]byte(`{"type":6}` + "\x1e" + `{"type":1,"target":"a","arguments":[1]}` + "\x1e"))
	f.Add([]byte(`{"type":7,"error":"x","allowReconnect":true}` + "\x1e{\"ty"))
	f.Add([]byte(`{"type":3,"invocationId":"1","result":null}` + "\x1e"))
	f.Add([]byte("\x1e\x1e{}\x1e"))
	f.Add([]byte(`{"type":6,"a":` + strings.Repeat("[", 20_000) + "\x1e"))
	f.Add([]byte(`{"type":6,"a":"\\\"[[[[","b":[[]]}` + "\x1e"))
	f.Fuzz(func(t *testing.T, in []byte) {
		recs, rest := splitRecords(in)
		var joined []byte
		for _, r := range recs {
			if bytes.IndexByte(r, recordSeparator) >= 0 {
				t.Fatal("separator inside a record")
			}
			joined = append(append(joined, r...), recordSeparator)
			// Keys match case-insensitively (encoding/json), which is
			// lenient but harmless: the official clients write "type".
			var err error
			if a := bytesAllocated(func() { _, err = parseMessage(r) }); a > allocBound(len(r)) {
				t.Fatalf("%d bytes allocated parsing %d", a, len(r))
			}
			if err == nil {
				var probe map[string]json.RawMessage
				if json.Unmarshal(r, &probe) != nil {
					t.Fatalf("parsed a non-object %q", r)
				}
				if !jsonDepthWithin(r, maxMessageDepth) {
					t.Fatalf("parsed a record nesting deeper than %d", maxMessageDepth)
				}
			}
		}
		if !bytes.Equal(append(joined, rest...), in) {
			t.Fatal("split lost bytes")
		}
	})
}
