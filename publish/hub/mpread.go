package hub

import (
	"encoding/binary"
	"errors"
	"math"
)

// A client's MessagePack message is read here, not by a general decoder:
// a general decoder allocates what a header declares (an array of
// 4,294,967,295 elements in a 5-byte message) and descends as deep as the
// message nests. mpReader allocates nothing, checks every declared length
// against the bytes that remain (an element takes at least one byte, so an
// array of n elements needs n more bytes), and bounds nesting at
// maxMessageDepth; it takes from a message only what the hub acts on and
// walks over the rest, so a message is either valid whole or refused.

var (
	errMPShort = errors.New("MessagePack value declares more bytes than the message holds")
	errMPByte  = errors.New("MessagePack message holds the never-used byte 0xc1")
)

// mpKind is a MessagePack type family.
type mpKind uint8

const (
	mpNil mpKind = iota
	mpBool
	mpInt   // head.i
	mpUint  // head.u
	mpFloat // value not kept
	mpStr   // head.p
	mpBin   // head.p
	mpExt   // head.p (type byte not kept)
	mpArray // head.n elements follow
	mpMap   // head.n key-value pairs follow
)

// mpHead is one value's header, with scalars read whole.
type mpHead struct {
	kind mpKind
	n    int    // array elements, map pairs
	i    int64  // mpInt
	u    uint64 // mpUint
	p    []byte // str, bin, ext payloads (alias the message)
}

// count is a non-negative integer value (either int family), or false.
func (h mpHead) count() (uint64, bool) {
	switch {
	case h.kind == mpUint:
		return h.u, true
	case h.kind == mpInt && h.i >= 0:
		return uint64(h.i), true
	}
	return 0, false
}

// mpReader reads MessagePack values from b, consuming it.
type mpReader struct{ b []byte }

// take consumes n bytes; n comes from the message, so it is checked
// before anything is sliced.
func (r *mpReader) take(n uint64) ([]byte, error) {
	if n > uint64(len(r.b)) {
		return nil, errMPShort
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p, nil
}

// uintN reads a big-endian unsigned integer of size bytes (1, 2, 4, 8).
func (r *mpReader) uintN(size uint64) (uint64, error) {
	p, err := r.take(size)
	if err != nil {
		return 0, err
	}
	switch size {
	case 1:
		return uint64(p[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(p)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(p)), nil
	}
	return binary.BigEndian.Uint64(p), nil
}

// payload reads a length of lenSize bytes, then that many bytes.
func (r *mpReader) payload(lenSize uint64) ([]byte, error) {
	n, err := r.uintN(lenSize)
	if err != nil {
		return nil, err
	}
	return r.take(n)
}

// container checks that n elements (2n for a map) can still follow: each
// takes at least one byte.
func (r *mpReader) container(kind mpKind, n uint64) (mpHead, error) {
	need := n
	if kind == mpMap {
		need = 2 * n // n < 2^32: no overflow
	}
	if need > uint64(len(r.b)) {
		return mpHead{}, errMPShort
	}
	return mpHead{kind: kind, n: int(n)}, nil
}

// head reads the next value's header (the MessagePack specification's
// formats); a container's elements are left to read.
func (r *mpReader) head() (mpHead, error) {
	if len(r.b) == 0 {
		return mpHead{}, errMPShort
	}
	c := r.b[0]
	r.b = r.b[1:]
	switch {
	case c <= 0x7f:
		return mpHead{kind: mpUint, u: uint64(c)}, nil
	case c >= 0xe0:
		return mpHead{kind: mpInt, i: int64(int8(c))}, nil
	case c <= 0x8f:
		return r.container(mpMap, uint64(c&0x0f))
	case c <= 0x9f:
		return r.container(mpArray, uint64(c&0x0f))
	case c <= 0xbf:
		p, err := r.take(uint64(c & 0x1f))
		return mpHead{kind: mpStr, p: p}, err
	}
	var h mpHead
	var err error
	switch c {
	case 0xc0:
		h.kind = mpNil
	case 0xc2, 0xc3:
		h.kind = mpBool
	case 0xc4, 0xc5, 0xc6: // bin 8, 16, 32
		h.kind = mpBin
		h.p, err = r.payload(1 << (c - 0xc4))
	case 0xc7, 0xc8, 0xc9: // ext 8, 16, 32: length, type, data
		var n uint64
		if n, err = r.uintN(1 << (c - 0xc7)); err == nil {
			h.kind = mpExt
			h.p, err = r.take(n + 1)
		}
	case 0xca, 0xcb: // float 32, 64
		h.kind = mpFloat
		_, err = r.take(4 << (c - 0xca))
	case 0xcc, 0xcd, 0xce, 0xcf: // uint 8 … 64
		h.kind = mpUint
		h.u, err = r.uintN(1 << (c - 0xcc))
	case 0xd0, 0xd1, 0xd2, 0xd3: // int 8 … 64
		var u uint64
		size := uint64(1) << (c - 0xd0)
		u, err = r.uintN(size)
		h.kind = mpInt
		switch size {
		case 1:
			h.i = int64(int8(u))
		case 2:
			h.i = int64(int16(u))
		case 4:
			h.i = int64(int32(u))
		default:
			h.i = int64(u)
		}
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1 … 16: type, data
		h.kind = mpExt
		h.p, err = r.take(1 + 1<<(c-0xd4))
	case 0xd9, 0xda, 0xdb: // str 8, 16, 32
		h.kind = mpStr
		h.p, err = r.payload(1 << (c - 0xd9))
	case 0xdc, 0xdd: // array 16, 32
		var n uint64
		if n, err = r.uintN(2 << (c - 0xdc)); err == nil {
			return r.container(mpArray, n)
		}
	case 0xde, 0xdf: // map 16, 32
		var n uint64
		if n, err = r.uintN(2 << (c - 0xde)); err == nil {
			return r.container(mpMap, n)
		}
	default: // 0xc1
		err = errMPByte
	}
	return h, err
}

// skipIn walks over what follows h (a container's elements), h being at
// nesting level depth (the message's array is level 1).
func (r *mpReader) skipIn(h mpHead, depth int) error {
	n := h.n
	switch h.kind {
	case mpMap:
		n *= 2
	case mpArray:
	default:
		return nil
	}
	if depth > maxMessageDepth {
		return errTooDeep
	}
	for range n {
		if err := r.skip(depth + 1); err != nil {
			return err
		}
	}
	return nil
}

// skip walks over the next value, at nesting level depth.
func (r *mpReader) skip(depth int) error {
	h, err := r.head()
	if err != nil {
		return err
	}
	return r.skipIn(h, depth)
}

// parseMessagePack reads a client's message [type, …]: the type, an
// Invocation's invocation id (element 2, when a string), an Ack's or
// Sequence's sequence id (element 1); every other element is walked over,
// checked. Unknown types are valid (the protocol says to ignore them).
func parseMessagePack(m []byte) (message, error) {
	r := mpReader{b: m}
	arr, err := r.head()
	if err != nil {
		return message{}, err
	}
	if arr.kind != mpArray {
		return message{}, errors.New("message is not a MessagePack array")
	}
	if arr.n == 0 {
		return message{}, errors.New("message has no type")
	}
	th, err := r.head()
	if err != nil {
		return message{}, err
	}
	var typ int64
	switch {
	case th.kind == mpInt:
		typ = th.i
	case th.kind == mpUint && th.u <= math.MaxInt64:
		typ = int64(th.u)
	default:
		return message{}, errors.New("message type is not a number")
	}
	msg := message{Type: int(typ)}
	for i := 1; i < arr.n; i++ {
		h, err := r.head()
		if err != nil {
			return message{}, err
		}
		switch {
		case i == 2 && h.kind == mpStr && (msg.Type == typeInvocation || msg.Type == typeStreamInvocation):
			msg.InvocationID = string(h.p)
		case i == 1 && (msg.Type == typeAck || msg.Type == typeSequence):
			n, ok := h.count()
			if !ok || n > math.MaxInt64 {
				return message{}, errors.New("sequence id is not a number")
			}
			msg.SequenceID = n
		}
		if err := r.skipIn(h, 2); err != nil {
			return message{}, err
		}
	}
	if (msg.Type == typeAck || msg.Type == typeSequence) && arr.n < 2 {
		return message{}, errors.New("message has no sequence id")
	}
	if len(r.b) != 0 {
		return message{}, errors.New("bytes after the MessagePack message")
	}
	return msg, nil
}
