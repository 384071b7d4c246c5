package hub

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// codec is a hub protocol's encoding of the messages the hub sends and
// reads (HubProtocol.md): JSON records ended by 0x1E, or MessagePack arrays
// each behind a VarInt length. A connection has one from its handshake on.
type codec interface {
	// binary reports whether the protocol needs the Binary transfer format
	// (WebSocket binary frames; not possible on Server-Sent Events).
	binary() bool
	// next returns the first whole message of buf (ok) and what follows
	// it, or !ok and buf when no message is whole yet; msg aliases buf.
	// One at a time: a buffer of many tiny messages costs no list of them.
	next(buf []byte) (msg, rest []byte, ok bool, err error)
	parse(msg []byte) (message, error)
	ping() []byte
	close(errMsg string, allowReconnect bool) []byte
	completionError(invocationID, msg string) []byte
	ack(n uint64) []byte
	sequence(n uint64) []byte
	// invocation is o encoded for this protocol; nil when it cannot be.
	invocation(o *outbound) []byte
}

func codecFor(protocol string) codec {
	if protocol == protoMessagePack {
		return msgpackCodec{}
	}
	return jsonCodec{}
}

type jsonCodec struct{}

func (jsonCodec) binary() bool { return false }
func (jsonCodec) next(buf []byte) ([]byte, []byte, bool, error) {
	i := bytes.IndexByte(buf, recordSeparator)
	if i < 0 {
		return nil, buf, false, nil
	}
	return buf[:i], buf[i+1:], true, nil
}
func (jsonCodec) parse(m []byte) (message, error)       { return parseMessage(m) }
func (jsonCodec) ping() []byte                          { return pingFrame }
func (jsonCodec) close(e string, allow bool) []byte     { return closeFrame(e, allow) }
func (jsonCodec) completionError(id, msg string) []byte { return completionError(id, msg) }
func (jsonCodec) ack(n uint64) []byte                   { return ackFrame(n) }
func (jsonCodec) sequence(n uint64) []byte              { return sequenceFrame(n) }
func (jsonCodec) invocation(o *outbound) []byte         { return o.json() }

// outbound is one Invocation sent to many connections: encoded once per
// protocol, on first use, and shared by every connection's queue.
type outbound struct {
	target string
	args   []json.RawMessage

	jsonOnce sync.Once
	jsonB    []byte
	mpOnce   sync.Once
	mpB      []byte
}

func newOutbound(target string, args []json.RawMessage) *outbound {
	return &outbound{target: target, args: args}
}

func (o *outbound) json() []byte {
	o.jsonOnce.Do(func() {
		if o.jsonB == nil {
			o.jsonB = appendInvocation(nil, o.target, o.args)
		}
	})
	return o.jsonB
}

// msgpack is the MessagePack Invocation [1, {}, nil, target, [args]], the
// arguments converted from JSON to the same structure (maps, arrays,
// strings, numbers, booleans, nil), so a MessagePack client gets what a
// JSON client gets. Nil when an argument is not valid JSON.
func (o *outbound) msgpack() []byte {
	o.mpOnce.Do(func() {
		args := make([]any, len(o.args))
		for i, a := range o.args {
			if len(a) == 0 {
				continue
			}
			v, err := jsonToMsgpack(a)
			if err != nil {
				return
			}
			args[i] = v
		}
		b, err := msgpack.Marshal([]any{typeInvocation, map[string]string{}, nil, o.target, args})
		if err != nil {
			return
		}
		o.mpB = frameBinary(b)
	})
	return o.mpB
}

// jsonToMsgpack decodes JSON keeping numbers exact: integers that fit stay
// integers (MessagePack ints), others become float64, as a JSON client's
// parser would read them.
func jsonToMsgpack(raw []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return convertNumbers(v), nil
}

func convertNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i
		}
		if u, err := strconv.ParseUint(string(x), 10, 64); err == nil {
			return u
		}
		f, _ := strconv.ParseFloat(string(x), 64)
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = convertNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = convertNumbers(e)
		}
	}
	return v
}

// frameBinary prefixes a MessagePack message with its length as a VarInt
// (7 bits a byte, low bits first), the binary message format.
func frameBinary(msg []byte) []byte {
	out := binary.AppendUvarint(make([]byte, 0, len(msg)+5), uint64(len(msg)))
	return append(out, msg...)
}

type msgpackCodec struct{}

var (
	mpPing = frameBinary([]byte{0x91, typePing})
	// errBadLength is a MessagePack length prefix longer than 5 bytes or
	// over 2 GB.
	errBadLength = errors.New("invalid MessagePack length prefix")
)

func (msgpackCodec) binary() bool { return true }

func (msgpackCodec) next(buf []byte) ([]byte, []byte, bool, error) {
	n, k := binary.Uvarint(buf)
	switch {
	case k == 0 && len(buf) < 5:
		return nil, buf, false, nil // the prefix is incomplete
	case k <= 0 || k > 5 || n > math.MaxInt32:
		return nil, buf, false, errBadLength
	case uint64(len(buf)-k) < n:
		return nil, buf, false, nil
	}
	return buf[k : k+int(n)], buf[k+int(n):], true, nil
}

// parse reads a client's message with mpReader, never trusting a length
// or depth the message declares (parseMessagePack).
func (msgpackCodec) parse(m []byte) (message, error) { return parseMessagePack(m) }

func mpEncode(v ...any) []byte {
	b, _ := msgpack.Marshal(v)
	return frameBinary(b)
}

func (msgpackCodec) ping() []byte { return mpPing }

// close is [7, error|nil, allowReconnect].
func (msgpackCodec) close(e string, allow bool) []byte {
	var errv any
	if e != "" {
		errv = e
	}
	return mpEncode(typeClose, errv, allow)
}

// completionError is [3, {}, invocationId, 1 (error), message].
func (msgpackCodec) completionError(id, msg string) []byte {
	return mpEncode(typeCompletion, map[string]string{}, id, 1, msg)
}

func (msgpackCodec) ack(n uint64) []byte           { return mpEncode(typeAck, n) }
func (msgpackCodec) sequence(n uint64) []byte      { return mpEncode(typeSequence, n) }
func (msgpackCodec) invocation(o *outbound) []byte { return o.msgpack() }
