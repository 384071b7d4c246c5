package postgres

import (
	"encoding/base64"
	"encoding/binary"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/changecast/changecast/internal/testkit"
)

// Fuzz targets of the parsers of outside bytes in this package: pgoutput
// messages (the server's), document ids and snapshot cursors (a caller's),
// transaction snapshots (the server's). `make test` runs their corpora
// (testdata/fuzz and the seeds below); `make fuzz` searches further.

// messages splits fuzz input into pgoutput messages, each led by its
// length (two bytes, big-endian); the seeds are built the same way.
func messages(data []byte) [][]byte {
	var out [][]byte
	for len(data) >= 2 {
		n := int(binary.BigEndian.Uint16(data))
		data = data[2:]
		n = min(n, len(data))
		out = append(out, data[:n])
		data = data[n:]
	}
	return out
}

func framed(msgs ...[]byte) []byte {
	var b []byte
	for _, m := range msgs {
		b = binary.BigEndian.AppendUint16(b, uint16(len(m)))
		b = append(b, m...)
	}
	return b
}

// FuzzDecodePgoutput: a session's decoder, after the Relation of
// public.items and a Begin, decodes any sequence of messages without
// panicking, allocating in proportion to the bytes it got (no length or
// count a message declares is trusted), and every change it returns names
// its collection and version.
func FuzzDecodePgoutput(f *testing.F) {
	rel := relationMsg(itemsRel, "public", "items", 'd', itemsCols...)
	begin := beginMsg(0x16B3748, commitAt, 731)
	for _, seed := range [][][]byte{
		{insertMsg(itemsRel, txt("1"), txt("acme"), null, txt("B"))},
		{updateMsg(itemsRel, 0, nil, txt("1"), txt("acme"), txt("hello"), toast)},
		{updateMsg(itemsRel, 'K', []datum{txt("1"), null, null, null}, txt("2"), txt("acme"), null, null)},
		{updateMsg(itemsRel, 'O', []datum{txt("1"), txt("a"), null, null}, txt("1"), txt("b"), null, null)},
		{deleteMsg(itemsRel, 'K', txt("1"), null, null, null)},
		{truncateMsg(itemsRel)},
		{logicalMsg(true, 0x16B3748, watermarkPrefix, "7")},
		{logicalMsg(false, 0x16B3748, heartbeatPrefix, "")},
		{relationMsg(itemsRel+1, "public", "pairs", 'f', relCol{"a", 25, true}, relCol{"b", 23, true})},
		{insertMsg(itemsRel, txt("x"), txt("acme"), null, null), commitMsg(0x16B3748, 0x16B3780, commitAt)},
		{commitMsg(0x16B3748, 0x16B3780, commitAt), beginMsg(0x16B3800, commitAt, 732)},
		{{'T', 0, 0xff, 0xff, 0xff, 0, 0, 0, 0x40, 0}},
		{{'I', 0, 0, 0x40, 0, 'N', 0xff, 0xff}},
	} {
		f.Add(framed(seed...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs := messages(data)
		testkit.BoundedAlloc(t, len(data), 64, 1<<20, func() {
			d, _ := newDecoder(itemsKeys)
			// A resnapshot message would start reading the database:
			// taken as one running already, it is only logged.
			d.src.resnapshotting.Store(true)
			for _, m := range [][]byte{rel, begin} {
				if _, err := d.decode(m); err != nil {
					t.Fatal(err)
				}
			}
			for _, m := range msgs {
				evs, err := d.decode(m)
				if err != nil {
					continue
				}
				for _, ev := range evs {
					if c := ev.Change; c != nil && (c.Collection == "" || c.Version == "") {
						t.Fatalf("a change without collection or version: %+v", c)
					}
				}
			}
		})
	})
}

// FuzzSnapshotKey: a caller's document id or cursor is split into key
// values, or refused; what is accepted is text a PostgreSQL literal can
// hold (valid UTF-8, no NUL), one value per key column, and a cursor this
// package wrote reads back as written.
func FuzzSnapshotKey(f *testing.F) {
	for _, s := range []string{"1", "abc", `["x",2]`, `[9007199254740993,"x"]`, `[true,null]`, `[1,"x"] x`, "\x00", "\xff",
		base64.RawURLEncoding.EncodeToString([]byte(`{"k":["1","a"]}`)), `{"k":["1"]}`} {
		f.Add(s, uint8(1))
		f.Add(s, uint8(2))
	}
	f.Fuzz(func(t *testing.T, s string, n uint8) {
		keys := int(n%4) + 1
		check := func(what string, vals []string, ok bool) {
			if !ok {
				return
			}
			if len(vals) != keys {
				t.Fatalf("%s %q: %d values for %d key columns", what, s, len(vals), keys)
			}
			for _, v := range vals {
				if !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
					t.Fatalf("%s %q: value %q cannot be a literal", what, s, v)
				}
			}
		}
		vals, ok := keyValues(s, keys)
		check("id", vals, ok)
		key, ok := decodeSnapshotCursor(s, keys)
		check("cursor", key, ok)
	})
}

// FuzzParseXidSnapshot: pg_current_snapshot()'s text parses or is
// refused, never panics.
func FuzzParseXidSnapshot(f *testing.F) {
	for _, s := range []string{"10:20:", "10:20:11,12", "4294967296:4294967300:4294967297", "1:2", "a:b:c", ":::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		testkit.BoundedAlloc(t, len(s), 128, 64<<10, func() {
			sn, err := parseXidSnapshot(s)
			if err == nil && sn == nil {
				t.Fatal("no snapshot and no error")
			}
		})
	})
}

// TestPgoutputMalformed: the messages the fuzz target found are errors:
// an empty one and a Truncate declaring more relations than it holds
// (pglogrepl panicked on both, the Truncate after allocating 4 bytes per
// declared relation), and a logical message declaring more content than
// it holds (pglogrepl read on into the buffer behind it, here the digits
// of another watermark).
func TestPgoutputMalformed(t *testing.T) {
	d, _ := newDecoder(itemsKeys)
	feedOK := func(m []byte) {
		if _, err := d.decode(m); err != nil {
			t.Fatal(err)
		}
	}
	feedOK(relationMsg(itemsRel, "public", "items", 'd', itemsCols...))
	feedOK(beginMsg(0x16B3748, commitAt, 731))
	whole := logicalMsg(true, 0x16B3748, watermarkPrefix, "7123")
	short := whole[:len(whole)-3] // declares 4 bytes of content, holds 1
	for name, m := range map[string][]byte{
		"empty":                {},
		"truncate":             {'T', 0, 0, 0x10, 0, 0, 0, 0, 0x40, 0},
		"content past its end": short,
	} {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: panic %v", name, r)
				}
			}()
			if _, err := d.decode(m); err == nil {
				t.Errorf("%s: no error", name)
			}
		}()
	}
	if len(d.marks) != 0 {
		t.Fatalf("watermarks read from past a message's end: %v", d.marks)
	}
}
