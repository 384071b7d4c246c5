package postgres

import (
	"encoding/binary"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/internal/testkit"
)

// The decoder is tested with pgoutput messages (protocol 1) built byte by
// byte as the server sends them in XLogData, so no server is needed. The
// layouts are those of PostgreSQL's "Logical Replication Message Formats".

// pgMsg builds one pgoutput message.
type pgMsg struct{ b []byte }

func msg(kind byte) *pgMsg { return &pgMsg{b: []byte{kind}} }

func (m *pgMsg) u8(v byte) *pgMsg    { m.b = append(m.b, v); return m }
func (m *pgMsg) u16(v uint16) *pgMsg { m.b = binary.BigEndian.AppendUint16(m.b, v); return m }
func (m *pgMsg) u32(v uint32) *pgMsg { m.b = binary.BigEndian.AppendUint32(m.b, v); return m }
func (m *pgMsg) u64(v uint64) *pgMsg { m.b = binary.BigEndian.AppendUint64(m.b, v); return m }
func (m *pgMsg) str(s string) *pgMsg { m.b = append(append(m.b, s...), 0); return m }
func (m *pgMsg) raw(p []byte) *pgMsg { m.b = append(m.b, p...); return m }
func (m *pgMsg) time(t time.Time) *pgMsg {
	// Microseconds since 2000-01-01 00:00:00 UTC.
	return m.u64(uint64(t.Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).Microseconds()))
}

// A datum is one value of a tuple: text, NULL, or an unchanged TOAST value.
type datum struct {
	kind byte // 't', 'n' or 'u'
	text string
}

func txt(s string) datum { return datum{'t', s} }

var (
	null  = datum{kind: 'n'}
	toast = datum{kind: 'u'}
)

func (m *pgMsg) tuple(ds ...datum) *pgMsg {
	m.u16(uint16(len(ds)))
	for _, d := range ds {
		m.u8(d.kind)
		if d.kind == 't' {
			m.u32(uint32(len(d.text))).raw([]byte(d.text))
		}
	}
	return m
}

type relCol struct {
	name string
	oid  uint32
	key  bool // part of the replica identity
}

// relationMsg is 'R': the shape of a table, sent before its first change in
// a session and again after it changes.
func relationMsg(id uint32, namespace, name string, identity byte, cols ...relCol) []byte {
	m := msg('R').u32(id).str(namespace).str(name).u8(identity).u16(uint16(len(cols)))
	for _, c := range cols {
		var flags byte
		if c.key {
			flags = 1
		}
		m.u8(flags).str(c.name).u32(c.oid).u32(0xFFFFFFFF) // atttypmod -1
	}
	return m.b
}

func beginMsg(finalLSN uint64, commit time.Time, xid uint32) []byte {
	return msg('B').u64(finalLSN).time(commit).u32(xid).b
}

func commitMsg(commitLSN, endLSN uint64, commit time.Time) []byte {
	return msg('C').u8(0).u64(commitLSN).u64(endLSN).time(commit).b
}

func insertMsg(rel uint32, row ...datum) []byte {
	return msg('I').u32(rel).u8('N').tuple(row...).b
}

// updateMsg is 'U'; old is nil (no old tuple: the key did not change under
// REPLICA IDENTITY DEFAULT), or 'K' (key columns) or 'O' (the whole old row,
// REPLICA IDENTITY FULL) with its values.
func updateMsg(rel uint32, oldKind byte, old []datum, row ...datum) []byte {
	m := msg('U').u32(rel)
	if oldKind != 0 {
		m.u8(oldKind).tuple(old...)
	}
	return m.u8('N').tuple(row...).b
}

func deleteMsg(rel uint32, oldKind byte, old ...datum) []byte {
	return msg('D').u32(rel).u8(oldKind).tuple(old...).b
}

func truncateMsg(rels ...uint32) []byte {
	m := msg('T').u32(uint32(len(rels))).u8(0)
	for _, r := range rels {
		m.u32(r)
	}
	return m.b
}

// logicalMsg is 'M', what pg_logical_emit_message writes (needs the
// messages option).
func logicalMsg(transactional bool, lsn uint64, prefix, content string) []byte {
	var flags byte
	if transactional {
		flags = 1
	}
	return msg('M').u8(flags).u64(lsn).str(prefix).u32(uint32(len(content))).raw([]byte(content)).b
}

// newDecoder returns a session's decoder for a source whose set-up found
// keys (table → key columns), and the source's log.
func newDecoder(keys map[string][]string) (*decoder, *testkit.Buffer) {
	log := &testkit.Buffer{}
	src := New(Config{Logger: slog.New(slog.NewTextHandler(log, nil))})
	src.keys = keys
	return &decoder{src: src, rels: map[uint32]*relation{}}, log
}

// feed decodes msgs in order and returns every event they produced.
func feed(t *testing.T, d *decoder, msgs ...[]byte) []changefeed.Event {
	t.Helper()
	var out []changefeed.Event
	for i, m := range msgs {
		evs, err := d.decode(m)
		if err != nil {
			t.Fatalf("message %d (%c): %v", i, m[0], err)
		}
		out = append(out, evs...)
	}
	return out
}

// changes returns the changes of evs, failing on a position-only event.
func changes(t *testing.T, evs []changefeed.Event) []*changefeed.Change {
	t.Helper()
	var out []*changefeed.Change
	for _, ev := range evs {
		if ev.Change == nil {
			t.Fatalf("a position where a change was expected: %+v", ev)
		}
		out = append(out, ev.Change)
	}
	return out
}

const (
	itemsRel = 16384
	pairsRel = 16390
)

var (
	commitAt = time.Date(2026, 11, 26, 16, 0, 0, 123456000, time.UTC)
	// public.items: id int8 (primary key), tenant text, note text, big text.
	itemsCols = []relCol{{"id", pgtype.Int8OID, true}, {"tenant", pgtype.TextOID, false}, {"note", pgtype.TextOID, false}, {"big", pgtype.TextOID, false}}
	itemsKeys = map[string][]string{"public.items": {"id"}}
)

func TestDecoderTransaction(t *testing.T) {
	d, _ := newDecoder(itemsKeys)
	const final, end = 0x16B3748, 0x16B3780
	evs := feed(t, d,
		relationMsg(itemsRel, "public", "items", 'd', itemsCols...),
		beginMsg(final, commitAt, 731))
	if len(evs) != 0 || !d.inTx {
		t.Fatalf("Relation and Begin: %+v, in a transaction: %v", evs, d.inTx)
	}
	evs = feed(t, d,
		insertMsg(itemsRel, txt("1"), txt("acme"), null, txt("B")),
		updateMsg(itemsRel, 0, nil, txt("1"), txt("acme"), txt("hello"), toast),
		deleteMsg(itemsRel, 'K', txt("1"), null, null, null))
	got := changes(t, evs)
	want := []*changefeed.Change{
		{Collection: "public.items", ID: "1", Op: changefeed.Insert, Version: "23803720.1", CommitTime: commitAt,
			After: map[string]any{"id": num("1"), "tenant": "acme", "note": nil, "big": "B"}},
		// The TOAST value did not change: absent from After, listed in
		// Unchanged (the mapper fills it from the previous version).
		// Without FULL the stream does not say where the row was.
		{Collection: "public.items", ID: "1", Op: changefeed.Update, Version: "23803720.2", CommitTime: commitAt, PrevUnknown: true,
			After: map[string]any{"id": num("1"), "tenant": "acme", "note": "hello"}, Unchanged: []string{"big"}},
		// Under REPLICA IDENTITY DEFAULT a delete carries the key only.
		{Collection: "public.items", ID: "1", Op: changefeed.Delete, Version: "23803720.3", CommitTime: commitAt,
			Before: map[string]any{"id": num("1")}, BeforePartial: true, PrevUnknown: true},
	}
	sameChanges(t, got, want)

	// The commit is where the source may resume: its end LSN.
	evs = feed(t, d, commitMsg(final, end, commitAt))
	if len(evs) != 1 || evs[0].Change != nil || evs[0].Position != changefeed.Position(pglogrepl.LSN(end).String()) || d.inTx {
		t.Fatalf("Commit: %+v (in a transaction: %v), want only the position %s", evs, d.inTx, pglogrepl.LSN(end))
	}

	// The next transaction numbers its changes from 1 again, after its own
	// commit LSN: versions grow across transactions.
	const final2 = 0x16B3800
	evs = feed(t, d, beginMsg(final2, commitAt.Add(time.Second), 732), insertMsg(itemsRel, txt("2"), txt("acme"), null, null))
	if c := changes(t, evs); len(c) != 1 || c[0].Version != "23803904.1" || !c[0].CommitTime.Equal(commitAt.Add(time.Second)) {
		t.Fatalf("second transaction: %+v", c[0])
	}
}

func TestDecoderUpdates(t *testing.T) {
	fullCols := itemsCols
	tests := []struct {
		name     string
		identity byte
		update   []byte
		want     changefeed.Change
	}{
		{
			name: "default identity, key kept", identity: 'd',
			update: updateMsg(itemsRel, 0, nil, txt("5"), txt("acme"), txt("n"), toast),
			want: changefeed.Change{ID: "5", Op: changefeed.Update, PrevUnknown: true,
				After: map[string]any{"id": num("5"), "tenant": "acme", "note": "n"}, Unchanged: []string{"big"}},
		},
		{
			// A key change: the old key arrives as a 'K' tuple; to clients
			// the old document is gone and the new one is new.
			name: "default identity, key changed", identity: 'd',
			update: updateMsg(itemsRel, 'K', []datum{txt("5"), null, null, null}, txt("6"), txt("acme"), null, toast),
			want: changefeed.Change{ID: "6", PrevID: "5", Op: changefeed.Update, PrevUnknown: true,
				Before: map[string]any{"id": num("5")}, BeforePartial: true,
				After: map[string]any{"id": num("6"), "tenant": "acme", "note": nil}, Unchanged: []string{"big"}},
		},
		{
			// REPLICA IDENTITY FULL: the old row is whole, and its value
			// fills the TOAST column the new tuple left out.
			name: "full identity, TOAST filled from the old row", identity: 'f',
			update: updateMsg(itemsRel, 'O', []datum{txt("5"), txt("acme"), txt("old"), txt("BIG")}, txt("5"), txt("globex"), txt("old"), toast),
			want: changefeed.Change{ID: "5", Op: changefeed.Update,
				Before: map[string]any{"id": num("5"), "tenant": "acme", "note": "old", "big": "BIG"},
				After:  map[string]any{"id": num("5"), "tenant": "globex", "note": "old", "big": "BIG"}},
		},
		{
			// When the old row lacks it too, it stays unchanged.
			name: "full identity, TOAST in neither row", identity: 'f',
			update: updateMsg(itemsRel, 'O', []datum{txt("5"), txt("acme"), null, toast}, txt("5"), txt("acme"), txt("new"), toast),
			want: changefeed.Change{ID: "5", Op: changefeed.Update,
				Before: map[string]any{"id": num("5"), "tenant": "acme", "note": nil},
				After:  map[string]any{"id": num("5"), "tenant": "acme", "note": "new"}, Unchanged: []string{"big"}},
		},
		{
			name: "full identity, key changed", identity: 'f',
			update: updateMsg(itemsRel, 'O', []datum{txt("5"), txt("acme"), null, txt("B")}, txt("7"), txt("acme"), null, toast),
			want: changefeed.Change{ID: "7", PrevID: "5", Op: changefeed.Update,
				Before: map[string]any{"id": num("5"), "tenant": "acme", "note": nil, "big": "B"},
				After:  map[string]any{"id": num("7"), "tenant": "acme", "note": nil, "big": "B"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := newDecoder(itemsKeys)
			c := changes(t, feed(t, d,
				relationMsg(itemsRel, "public", "items", tc.identity, fullCols...),
				beginMsg(0x100, commitAt, 1), tc.update))
			tc.want.Collection, tc.want.Version, tc.want.CommitTime = "public.items", "256.1", commitAt
			sameChanges(t, c, []*changefeed.Change{&tc.want})
		})
	}
}

func TestDecoderDeletes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		identity byte
		del      []byte
		before   map[string]any
		partial  bool
	}{
		{"default identity", 'd', deleteMsg(itemsRel, 'K', txt("9"), null, null, null), map[string]any{"id": num("9")}, true},
		{"full identity", 'f', deleteMsg(itemsRel, 'O', txt("9"), txt("acme"), null, txt("B")),
			map[string]any{"id": num("9"), "tenant": "acme", "note": nil, "big": "B"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := newDecoder(itemsKeys)
			c := changes(t, feed(t, d, relationMsg(itemsRel, "public", "items", tc.identity, itemsCols...), beginMsg(0x100, commitAt, 1), tc.del))
			sameChanges(t, c, []*changefeed.Change{{Collection: "public.items", ID: "9", Op: changefeed.Delete, Version: "256.1",
				CommitTime: commitAt, Before: tc.before, BeforePartial: tc.partial, PrevUnknown: tc.identity != 'f'}})
		})
	}
}

func TestDecoderTruncate(t *testing.T) {
	d, _ := newDecoder(map[string][]string{"public.items": {"id"}, "app.pairs": {"a", "b"}})
	c := changes(t, feed(t, d,
		relationMsg(itemsRel, "public", "items", 'd', itemsCols...),
		relationMsg(pairsRel, "app", "pairs", 'd', relCol{"a", pgtype.TextOID, true}, relCol{"b", pgtype.Int4OID, true}),
		beginMsg(0x200, commitAt, 1),
		insertMsg(itemsRel, txt("1"), txt("t"), null, null),
		truncateMsg(itemsRel, pairsRel)))
	if len(c) != 3 {
		t.Fatalf("%d changes, want an insert and two truncates", len(c))
	}
	sameChanges(t, c[1:], []*changefeed.Change{
		{Collection: "public.items", Op: changefeed.Truncate, Version: "512.2", CommitTime: commitAt},
		{Collection: "app.pairs", Op: changefeed.Truncate, Version: "512.3", CommitTime: commitAt},
	})
	if _, err := d.decode(truncateMsg(itemsRel, 4242)); err == nil || !strings.Contains(err.Error(), "relation 4242") {
		t.Fatalf("truncate of an unknown relation: %v", err)
	}
}

func TestDecoderKeys(t *testing.T) {
	// A composite key, in the order the source's set-up gave (not the
	// table's column order), is a JSON array.
	d, _ := newDecoder(map[string][]string{"app.pairs": {"b", "a"}})
	c := changes(t, feed(t, d,
		relationMsg(pairsRel, "app", "pairs", 'd', relCol{"a", pgtype.TextOID, true}, relCol{"b", pgtype.Int4OID, true}, relCol{"v", pgtype.TextOID, false}),
		beginMsg(0x300, commitAt, 1),
		insertMsg(pairsRel, txt("x"), txt("2"), txt("v1")),
		updateMsg(pairsRel, 'K', []datum{txt("x"), txt("2"), null}, txt("y"), txt("2"), txt("v1")),
		deleteMsg(pairsRel, 'K', txt("y"), txt("2"), null)))
	if len(c) != 3 || c[0].ID != `[2,"x"]` || c[1].ID != `[2,"y"]` || c[1].PrevID != `[2,"x"]` || c[2].ID != `[2,"y"]` {
		var ids []string
		for _, x := range c {
			ids = append(ids, x.PrevID+"→"+x.ID)
		}
		t.Fatalf("composite ids (prev→id): %q", ids)
	}
	// A key override names a column the primary key does not have: the
	// relation's key flags do not matter, the configured columns do.
	d, _ = newDecoder(map[string][]string{"public.users": {"email"}})
	c = changes(t, feed(t, d,
		relationMsg(1, "public", "users", 'f', relCol{"id", pgtype.Int4OID, true}, relCol{"email", pgtype.TextOID, false}),
		beginMsg(0x400, commitAt, 1),
		insertMsg(1, txt("1"), txt("ann@example.com")),
		updateMsg(1, 'O', []datum{txt("1"), txt("ann@example.com")}, txt("1"), txt("ann@example.org"))))
	if c[0].ID != "ann@example.com" || c[1].ID != "ann@example.org" || c[1].PrevID != "ann@example.com" {
		t.Fatalf("ids with a key override: %q, %q (prev %q)", c[0].ID, c[1].ID, c[1].PrevID)
	}
}

func TestDecoderRelationChanges(t *testing.T) {
	// A Relation message sent again (after ALTER TABLE) replaces the cached
	// shape: later tuples are read with the new columns.
	d, _ := newDecoder(itemsKeys)
	c := changes(t, feed(t, d,
		relationMsg(itemsRel, "public", "items", 'd', itemsCols[:2]...),
		beginMsg(0x500, commitAt, 1),
		insertMsg(itemsRel, txt("1"), txt("a")),
		relationMsg(itemsRel, "public", "items", 'd', append(itemsCols[:2:2], relCol{"added", pgtype.BoolOID, false})...),
		insertMsg(itemsRel, txt("2"), txt("a"), txt("t"))))
	if !reflect.DeepEqual(c[1].After, map[string]any{"id": num("2"), "tenant": "a", "added": true}) {
		t.Fatalf("after the new Relation: %#v", c[1].After)
	}
	if _, ok := c[0].After["added"]; ok {
		t.Fatalf("the first insert has the later column: %#v", c[0].After)
	}
}

func TestDecoderUnknownTypesAndBadValues(t *testing.T) {
	d, log := newDecoder(map[string][]string{"public.moods": {"id"}})
	const moodOID = 70001 // a user-defined enum: no codec knows it
	c := changes(t, feed(t, d,
		relationMsg(2, "public", "moods", 'd', relCol{"id", pgtype.Int4OID, true}, relCol{"m", moodOID, false}, relCol{"n", pgtype.Int4OID, false}),
		beginMsg(0x600, commitAt, 1),
		insertMsg(2, txt("1"), txt("happy"), txt("3")),
		insertMsg(2, txt("2"), txt("sad"), txt("three"))))
	// An unknown type goes out as its text, and is logged once per column,
	// not once per row.
	if c[0].After["m"] != "happy" || c[0].Err != nil {
		t.Fatalf("unknown type: %+v", c[0])
	}
	if n := strings.Count(log.String(), "type changecast does not know"); n != 1 || !strings.Contains(log.String(), "column=m") {
		t.Fatalf("%d warnings about column m, want 1:\n%s", n, log)
	}
	// A value that does not decode still yields the change, with its id and
	// the error: the pipeline sends a refetch marker for it.
	if c[1].ID != "2" || c[1].Err == nil || !strings.Contains(c[1].Err.Error(), "column n") {
		t.Fatalf("bad value: %+v", c[1])
	}
}

func TestDecoderMessages(t *testing.T) {
	d, _ := newDecoder(itemsKeys)
	// A heartbeat outside a transaction is a position to confirm, so quiet
	// publications advance.
	evs := feed(t, d, logicalMsg(false, 0x700, heartbeatPrefix, ""))
	if len(evs) != 1 || evs[0].Change != nil || evs[0].Position != "0/700" {
		t.Fatalf("heartbeat: %+v", evs)
	}
	// Other messages, and any inside a transaction, are not.
	for _, m := range [][]byte{
		logicalMsg(false, 0x710, "app.audit", "x"),
		logicalMsg(true, 0x720, heartbeatPrefix, ""),
	} {
		if evs := feed(t, d, m); len(evs) != 0 {
			t.Fatalf("message %q: %+v", m, evs)
		}
	}
	feed(t, d, beginMsg(0x800, commitAt, 1))
	if evs := feed(t, d, logicalMsg(false, 0x730, heartbeatPrefix, "")); len(evs) != 0 {
		t.Fatalf("a heartbeat inside a transaction must not move the position: %+v", evs)
	}
	// Messages the decoder has no use for (Origin, Type) produce nothing.
	if evs := feed(t, d, msg('O').u64(0x800).str("origin").b, msg('Y').u32(70001).str("public").str("mood").b); len(evs) != 0 {
		t.Fatalf("Origin and Type: %+v", evs)
	}
}

func TestDecoderErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  []byte
		want string
	}{
		{"change before its Relation", insertMsg(99, txt("1")), "relation 99 before its Relation message"},
		{"update before its Relation", updateMsg(99, 0, nil, txt("1")), "relation 99"},
		{"delete before its Relation", deleteMsg(99, 'K', txt("1")), "relation 99"},
		{"truncated message", beginMsg(1, commitAt, 1)[:9], "parse pgoutput message"},
		{"unknown message type", msg('Z').u32(1).b, "parse pgoutput message"},
	} {
		d, _ := newDecoder(itemsKeys)
		if _, err := d.decode(tc.msg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

// sameChanges compares changes field by field (CommitTime with Equal).
func sameChanges(t *testing.T, got, want []*changefeed.Change) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d changes, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := *got[i], *want[i]
		if !g.CommitTime.Equal(w.CommitTime) {
			t.Errorf("change %d: commit time %v, want %v", i, g.CommitTime, w.CommitTime)
		}
		g.CommitTime, w.CommitTime = time.Time{}, time.Time{}
		if g.Err != nil {
			t.Errorf("change %d: %v", i, g.Err)
		}
		if len(g.Unchanged) == 0 {
			g.Unchanged = nil
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("change %d:\n got  %+v\n want %+v", i, g, w)
		}
	}
}
