package hub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/changecast/changecast/schema/wire"
)

// The JSON hub protocol (dotnet/aspnetcore src/SignalR/docs/specs/HubProtocol.md):
// records are JSON objects each ended by 0x1E; the first record a client
// sends is the handshake request.

const recordSeparator = 0x1e

// Message types of the hub protocol.
const (
	typeInvocation       = 1
	typeStreamItem       = 2
	typeCompletion       = 3
	typeStreamInvocation = 4
	typeCancelInvocation = 5
	typePing             = 6
	typeClose            = 7
	typeAck              = 8
	typeSequence         = 9
)

var (
	handshakeOK = []byte("{}\x1e")
	pingFrame   = []byte("{\"type\":6}\x1e")
)

// handshake is a client's handshake request.
type handshake struct {
	Protocol string
	Version  int
}

// Hub protocol names of the handshake, and the highest version of each the
// hub speaks: version 2 adds Ack and Sequence (stateful reconnect), as in
// ASP.NET Core 8.
const (
	protoJSON        = "json"
	protoMessagePack = "messagepack"
	maxProtoVersion  = 2
)

// errIncomplete means no whole record has arrived yet.
var errIncomplete = errors.New("incomplete record")

// parseHandshake reads the handshake request at the start of buf and returns
// what follows it (records sent in the same frame). It returns errIncomplete
// while buf holds no separator yet. Any other error is for the client: send
// it back with handshakeError. JSON and MessagePack, versions 1 and 2, are
// accepted; the handshake itself is JSON whatever the protocol.
func parseHandshake(buf []byte) (handshake, []byte, error) {
	i := bytes.IndexByte(buf, recordSeparator)
	if i < 0 {
		return handshake{}, buf, errIncomplete
	}
	if !jsonDepthWithin(buf[:i], maxMessageDepth) {
		return handshake{}, nil, errors.New("Handshake request nests too deep.")
	}
	var raw struct {
		Protocol *string `json:"protocol"`
		Version  *int    `json:"version"`
	}
	if err := json.Unmarshal(buf[:i], &raw); err != nil {
		return handshake{}, nil, errors.New("Handshake request is not a JSON object.")
	}
	if raw.Protocol == nil {
		return handshake{}, nil, errors.New("Handshake request is missing the protocol.")
	}
	if raw.Version == nil {
		return handshake{}, nil, errors.New("Handshake request is missing the version.")
	}
	h := handshake{Protocol: *raw.Protocol, Version: *raw.Version}
	if h.Protocol != protoJSON && h.Protocol != protoMessagePack {
		return h, nil, fmt.Errorf("Requested protocol '%s' is not available.", truncate(h.Protocol, 64))
	}
	if h.Version < 1 || h.Version > maxProtoVersion {
		return h, nil, fmt.Errorf("The server does not support version %d of the '%s' protocol.", h.Version, h.Protocol)
	}
	return h, buf[i+1:], nil
}

// handshakeError is the handshake response that rejects a client.
func handshakeError(msg string) []byte {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	return append(b, recordSeparator)
}

// message is what the hub needs of a client message; arguments, results and
// stream items are not kept since a serverless hub does not run methods.
type message struct {
	Type         int
	InvocationID string
	SequenceID   uint64 // Ack and Sequence
}

// parseMessage decodes one record. Unknown types are valid (the protocol
// says to ignore them); a record that is not an object with a numeric type
// is a protocol error.
func parseMessage(rec []byte) (message, error) {
	if !jsonDepthWithin(rec, maxMessageDepth) {
		return message{}, errTooDeep
	}
	var raw struct {
		Type         *int   `json:"type"`
		InvocationID string `json:"invocationId"`
		SequenceID   uint64 `json:"sequenceId"`
	}
	if err := json.Unmarshal(rec, &raw); err != nil {
		return message{}, fmt.Errorf("message is not a JSON object: %w", err)
	}
	if raw.Type == nil {
		return message{}, errors.New("message has no type")
	}
	return message{Type: *raw.Type, InvocationID: raw.InvocationID, SequenceID: raw.SequenceID}, nil
}

// maxMessageDepth bounds the nesting of arrays and objects (or maps) in a
// client's message, the message's own included, in both protocols and in
// the handshake: a
// serverless hub reads only a few top-level fields, and encoding/json
// alone would go 10,000 levels deep, with a stack entry for each.
const maxMessageDepth = 64

var errTooDeep = errors.New("message nests deeper than the hub accepts")

// jsonDepthWithin reports whether the arrays and objects of rec nest at
// most max levels deep (rec need not be valid JSON: the decoder judges
// that).
func jsonDepthWithin(rec []byte, max int) bool {
	depth, inString, escaped := 0, false, false
	for _, c := range rec {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			if depth++; depth > max {
				return false
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return true
}

// appendInvocation appends a non-blocking Invocation record of target with
// args (valid JSON each, never re-encoded).
func appendInvocation(dst []byte, target string, args []json.RawMessage) []byte {
	dst = append(dst, `{"type":1,"target":`...)
	dst = wire.AppendString(dst, target) // as encoding/json would, without its reflection
	dst = append(dst, `,"arguments":[`...)
	for i, a := range args {
		if i > 0 {
			dst = append(dst, ',')
		}
		if len(a) == 0 {
			a = json.RawMessage("null")
		}
		dst = append(dst, a...)
	}
	return append(dst, "]}\x1e"...)
}

// closeFrame is a Close record. allowReconnect makes a client with
// withAutomaticReconnect reconnect; without it the client stops for good.
func closeFrame(errMsg string, allowReconnect bool) []byte {
	b, _ := json.Marshal(struct {
		Type           int    `json:"type"`
		Error          string `json:"error,omitempty"`
		AllowReconnect bool   `json:"allowReconnect,omitempty"`
	}{typeClose, errMsg, allowReconnect})
	return append(b, recordSeparator)
}

// completionError answers a client invocation that expects a result.
func completionError(invocationID, msg string) []byte {
	b, _ := json.Marshal(struct {
		Type         int    `json:"type"`
		InvocationID string `json:"invocationId"`
		Error        string `json:"error"`
	}{typeCompletion, invocationID, msg})
	return append(b, recordSeparator)
}

// ackFrame and sequenceFrame are the stateful reconnect messages (JSON).
func ackFrame(n uint64) []byte {
	return fmt.Appendf(nil, `{"type":%d,"sequenceId":%d}`+"\x1e", typeAck, n)
}

func sequenceFrame(n uint64) []byte {
	return fmt.Appendf(nil, `{"type":%d,"sequenceId":%d}`+"\x1e", typeSequence, n)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
