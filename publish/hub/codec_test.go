package hub

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// A MessagePack client gets the envelope as the structure a JSON client
// parses: same maps, arrays, strings, booleans, nulls and numbers.
func TestMessagePackInvocationCarriesTheSameStructure(t *testing.T) {
	env := `{"source":"s","changes":[{"op":"upsert","id":"18","v":"23456790.1","doc":{"id":18,"total":12.5,"qty":-3,
		"big":9007199254740991,"huge":18446744073709551615,"tags":["a","ü"],"note":null,"paid":true}}]}`
	o := newOutbound("changes", []json.RawMessage{json.RawMessage(env), json.RawMessage(`2`)})
	b := o.msgpack()
	msgs, rest, err := split(msgpackCodec{}, b)
	if err != nil || len(msgs) != 1 || len(rest) != 0 {
		t.Fatalf("split: %d messages, rest %d, %v", len(msgs), len(rest), err)
	}
	var arr []any
	if err := msgpack.Unmarshal(msgs[0], &arr); err != nil {
		t.Fatal(err)
	}
	if len(arr) != 5 || arr[0] != int8(typeInvocation) || arr[2] != nil || arr[3] != "changes" {
		t.Fatalf("invocation %#v", arr)
	}
	var want any
	if err := json.Unmarshal([]byte(env), &want); err != nil {
		t.Fatal(err)
	}
	args := arr[4].([]any)
	if got := normalize(args[0]); !reflect.DeepEqual(got, want) {
		t.Fatalf("argument\n got %#v\nwant %#v", got, want)
	}
	if normalize(args[1]) != 2.0 {
		t.Fatalf("second argument %#v", args[1])
	}
	if bytes.Equal(o.msgpack(), o.json()) || !strings.HasSuffix(string(o.json()), "\x1e") {
		t.Fatal("the JSON encoding is a JSON record")
	}
}

// normalize turns MessagePack's decoded numbers into float64, as
// encoding/json decodes them.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
	case int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32:
		return reflect.ValueOf(x).Convert(reflect.TypeOf(0.0)).Interface()
	}
	return v
}

func TestMessagePackClientMessages(t *testing.T) {
	var in []byte
	for _, m := range [][]any{{typePing}, {typeAck, 7}, {typeSequence, 3}, {typeInvocation, map[string]any{}, "9", "x", []any{}}, {typeClose, nil}} {
		b, _ := msgpack.Marshal(m)
		in = append(in, frameBinary(b)...)
	}
	c := msgpackCodec{}
	msgs, rest, err := split(c, append(in, 0x85)) // and a length prefix cut short
	if err != nil || len(msgs) != 5 || !bytes.Equal(rest, []byte{0x85}) {
		t.Fatalf("split: %d %q %v", len(msgs), rest, err)
	}
	want := []message{{Type: typePing}, {Type: typeAck, SequenceID: 7}, {Type: typeSequence, SequenceID: 3},
		{Type: typeInvocation, InvocationID: "9"}, {Type: typeClose}}
	for i, m := range msgs {
		got, err := c.parse(m)
		if err != nil || got != want[i] {
			t.Errorf("message %d: %+v %v, want %+v", i, got, err, want[i])
		}
	}
	if _, _, err := split(c, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0x01}); err == nil {
		t.Error("a 6-byte length prefix was accepted")
	}
	if _, err := c.parse([]byte{0xc1}); err == nil {
		t.Error("garbage parsed")
	}
	if !bytes.Equal(c.ping(), []byte{0x02, 0x91, 0x06}) {
		t.Errorf("ping %x", c.ping())
	}
	var cl []any
	err = msgpack.Unmarshal(c.close("bye", true)[1:], &cl)
	if err != nil || len(cl) != 3 || cl[1] != "bye" || cl[2] != true {
		t.Errorf("close %#v %v", cl, err)
	}
	if got := (jsonCodec{}).ack(5); string(got) != `{"type":8,"sequenceId":5}`+"\x1e" {
		t.Errorf("ack %q", got)
	}
}

// split is every whole message at the start of buf, by cd.next, and the
// rest (with the error that stopped it).
func split(cd codec, buf []byte) (msgs [][]byte, rest []byte, err error) {
	for {
		m, r, ok, err := cd.next(buf)
		if err != nil || !ok {
			return msgs, buf, err
		}
		msgs, buf = append(msgs, m), r
	}
}

// splitRecords is split for JSON records, which never fails.
func splitRecords(buf []byte) ([][]byte, []byte) {
	recs, rest, _ := split(jsonCodec{}, buf)
	return recs, rest
}

// FuzzMessagePackSplit: split accounts for every input byte: each message
// is the bytes its length prefix announces, where that prefix stands, one
// after the other from the start; the rest is what follows the last one:
// an incomplete message, or (with an error) a bad length prefix.
func FuzzMessagePackSplit(f *testing.F) {
	f.Add([]byte{0x02, 0x91, 0x06, 0x03})
	f.Add([]byte{0x80, 0x80, 0x80, 0x80, 0x08})
	f.Add([]byte{0x00, 0x02, 0x91, 0x06, 0x00}) // empty messages
	f.Add([]byte{0x81, 0x00, 0x02, 0x91, 0x06}) // a length in two bytes
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, in []byte) {
		msgs, rest, err := split(msgpackCodec{}, in)
		pos := 0
		for i, m := range msgs {
			n, k := binary.Uvarint(in[pos:])
			if k <= 0 || n != uint64(len(m)) || !bytes.Equal(in[pos+k:pos+k+len(m)], m) {
				t.Fatalf("message %d (%x) is not the one prefixed at byte %d of %x", i, m, pos, in)
			}
			pos += k + len(m)
		}
		if !bytes.Equal(in[pos:], rest) {
			t.Fatalf("rest %x is not the %d bytes after the messages of %x", rest, len(in)-pos, in)
		}
		n, k := binary.Uvarint(rest)
		bad := k < 0 || k > 5 || n > math.MaxInt32 || (k == 0 && len(rest) >= 5)
		switch {
		case err != nil && !bad:
			t.Fatalf("error %v with a good prefix in %x", err, rest)
		case err == nil && bad:
			t.Fatalf("bad prefix in %x taken as an incomplete message", rest)
		case err == nil && k > 0 && uint64(len(rest)-k) >= n:
			t.Fatalf("a whole message left in the rest %x", rest)
		}
	})
}

// Stateful reconnect: what was taken and not acknowledged is queued again
// after a Sequence message naming its first id; the stateful buffer bounds
// what a connection without a transport keeps.
func TestSendQueueResume(t *testing.T) {
	q := newSendQueue(1 << 20)
	q.release()
	q.setStateful(10)
	for _, m := range []string{"a", "b", "c"} {
		if !q.push([]byte(m), true) {
			t.Fatal("push refused")
		}
	}
	q.push([]byte("ping"), false)
	frames, _, _, _ := q.take(0, nil)
	if len(frames) != 4 {
		t.Fatalf("took %q", frames)
	}
	q.ack(1) // the client has a
	q.detach()
	if !q.push([]byte("d"), true) {
		t.Fatal("push while detached refused")
	}
	if q.push([]byte("123456789"), true) {
		t.Fatal("the detached queue held more than its stateful buffer")
	}
	gen := q.resume(func(first uint64) []byte { return []byte("seq" + string(rune('0'+first))) })
	if _, _, _, stale := q.take(0, nil); !stale {
		t.Fatal("the old transport still takes")
	}
	frames, _, _, _ = q.take(gen, nil)
	var got []string
	for _, f := range frames {
		got = append(got, string(f))
	}
	if strings.Join(got, ",") != "seq2,b,c,d" {
		t.Fatalf("after resume: %v", got)
	}
	// Unacknowledged messages count against the connected bound; over it a
	// push fails (the client is too slow).
	q.ack(4)
	if !q.push(bytes.Repeat([]byte("x"), 1<<20), true) || q.push([]byte("y"), true) {
		t.Fatal("the connected bound does not hold")
	}
}

// TestQueueBetweenPolls: a long-polling connection has no transport
// between two polls; its queue keeps the usual bound then (only stateful
// reconnect bounds a detached queue by its buffer).
func TestQueueBetweenPolls(t *testing.T) {
	q := newSendQueue(1000)
	q.release()
	q.detach() // a poll ended
	for i := range 10 {
		if !q.push([]byte("a message of some bytes"), true) {
			t.Fatalf("push %d between two polls refused", i)
		}
	}
	if q.push(make([]byte, 1000), true) {
		t.Fatal("the queue held more than its bound")
	}
}
