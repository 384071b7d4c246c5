package publish

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/schema/wire"
)

func newTestMapper(t *testing.T, ms ...Mapping) *Mapper {
	t.Helper()
	m, err := NewMapper(ms, MapperOptions{ShadowSize: 100, MaxChangeBytes: 2000})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func doc(kv ...any) map[string]any {
	m := map[string]any{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

func one(t *testing.T, outs []Output) Output {
	t.Helper()
	if len(outs) != 1 {
		t.Fatalf("got %d outputs, want 1: %+v", len(outs), outs)
	}
	return outs[0]
}

func TestMapperPatchUpsertAndProjection(t *testing.T) {
	m := newTestMapper(t, Mapping{Collection: "c", Hub: "h", Group: "g-{/tenant}", Method: "changes", Exclude: []string{"/secret", "/nested/hidden"}})
	ins := one(t, m.Map(&changefeed.Change{Collection: "c", ID: "1", Op: changefeed.Insert, Version: "10.1",
		After: doc("id", int64(1), "tenant", "a", "secret", "x", "status", "new", "nested", doc("hidden", 1, "shown", 2), "text", strings.Repeat("z", 200))}, nil))
	if ins.Audience != (Audience{Hub: "h", Group: "g-a", Method: "changes"}) || ins.Change.Op != wire.OpUpsert {
		t.Fatalf("insert: %+v", ins)
	}
	if s := string(ins.Change.Doc); strings.Contains(s, "secret") || strings.Contains(s, "hidden") || !strings.Contains(s, `"shown":2`) {
		t.Fatalf("projection: %s", s)
	}
	upd := one(t, m.Map(&changefeed.Change{Collection: "c", ID: "1", Op: changefeed.Update, Version: "11.1",
		After: doc("id", int64(1), "tenant", "a", "secret", "y", "status", "paid", "nested", doc("hidden", 1, "shown", 2), "text", strings.Repeat("z", 200))}, nil))
	if upd.Change.Op != wire.OpPatch || upd.Change.PV != "10.1" || upd.Change.V != "11.1" ||
		string(upd.Change.Patch) != `[{"op":"replace","path":"/status","value":"paid"}]` {
		t.Fatalf("update: %+v %s", upd.Change, upd.Change.Patch)
	}
	// Only an excluded field changed: clients see no change, nothing is sent.
	if outs := m.Map(&changefeed.Change{Collection: "c", ID: "1", Op: changefeed.Update, Version: "12.1",
		After: doc("id", int64(1), "tenant", "a", "secret", "z", "status", "paid", "nested", doc("hidden", 1, "shown", 2), "text", strings.Repeat("z", 200))}, nil); len(outs) != 0 {
		t.Fatalf("invisible update sent: %+v", outs)
	}
	// A replay of an older version is dropped.
	if outs := m.Map(&changefeed.Change{Collection: "c", ID: "1", Op: changefeed.Update, Version: "10.1", After: doc("id", int64(1), "tenant", "a")}, nil); len(outs) != 0 || m.Stats.Replays != 1 {
		t.Fatalf("replay sent: %+v", outs)
	}
	// A small document whose patch would be larger is sent whole.
	m2 := newTestMapper(t, Mapping{Collection: "c", Hub: "h", Method: "changes"})
	m2.Map(&changefeed.Change{Collection: "c", ID: "1", Op: changefeed.Insert, Version: "1", After: doc("a", 1, "b", 2)}, nil)
	o := one(t, m2.Map(&changefeed.Change{Collection: "c", ID: "1", Op: changefeed.Update, Version: "2", After: doc("a", 3, "b", 4)}, nil))
	if o.Change.Op != wire.OpUpsert {
		t.Fatalf("want upsert when the patch is larger: %+v", o.Change)
	}
}

func TestMapperRoutingMovesAndDeletes(t *testing.T) {
	m := newTestMapper(t, Mapping{Collection: "c", Hub: "h", User: "{/owner}", Method: "t"})
	m.Map(&changefeed.Change{Collection: "c", ID: "1", Op: changefeed.Insert, Version: "1", After: doc("owner", "ann")}, nil)
	outs := m.Map(&changefeed.Change{Collection: "c", ID: "1", Op: changefeed.Update, Version: "2", After: doc("owner", "bob")}, nil)
	if len(outs) != 2 || outs[0].Audience.User != "ann" || outs[0].Change.Op != wire.OpDelete ||
		outs[1].Audience.User != "bob" || outs[1].Change.Op != wire.OpUpsert {
		t.Fatalf("move: %+v", outs)
	}
	// Delete with only the key in the before-image: the shadow knows the user.
	d := one(t, m.Map(&changefeed.Change{Collection: "c", ID: "1", Op: changefeed.Delete, Version: "3", Before: doc("id", 1), BeforePartial: true}, nil))
	if d.Audience.User != "bob" || d.Change.Op != wire.OpDelete {
		t.Fatalf("delete: %+v", d)
	}
	// Unknown document, no routing field: counted, not sent.
	if outs := m.Map(&changefeed.Change{Collection: "c", ID: "9", Op: changefeed.Delete, Version: "4", Before: doc("id", 9)}, nil); len(outs) != 0 || m.Stats.Unroutable != 1 {
		t.Fatalf("unroutable: %+v %+v", outs, m.Stats)
	}
}

func TestMapperUnchangedToastAndRefetch(t *testing.T) {
	m := newTestMapper(t, Mapping{Collection: "c", Hub: "h", Method: "t"})
	// No previous version: the client must refetch, never get a placeholder.
	o := one(t, m.Map(&changefeed.Change{Collection: "c", ID: "1", Op: changefeed.Update, Version: "1", After: doc("n", 1), Unchanged: []string{"big"}}, nil))
	if o.Change.Op != wire.OpRefetch || o.Change.Reason != "unchanged_toast" {
		t.Fatalf("%+v", o.Change)
	}
	m.Map(&changefeed.Change{Collection: "c", ID: "1", Op: changefeed.Update, Version: "2", After: doc("n", 1, "big", strings.Repeat("b", 100))}, nil)
	o = one(t, m.Map(&changefeed.Change{Collection: "c", ID: "1", Op: changefeed.Update, Version: "3", After: doc("n", 2), Unchanged: []string{"big"}}, nil))
	if o.Change.Op != wire.OpPatch || string(o.Change.Patch) != `[{"op":"replace","path":"/n","value":2}]` {
		t.Fatalf("filled from shadow: %+v %s", o.Change, o.Change.Patch)
	}
	// Too large for one message: refetch marker, and the next change is sent whole.
	o = one(t, m.Map(&changefeed.Change{Collection: "c", ID: "1", Op: changefeed.Update, Version: "4", After: doc("n", 3, "big", strings.Repeat("x", 5000))}, nil))
	if o.Change.Op != wire.OpRefetch || o.Change.Reason != "too_large" {
		t.Fatalf("%+v", o.Change)
	}
	o = one(t, m.Map(&changefeed.Change{Collection: "c", ID: "1", Op: changefeed.Update, Version: "5", After: doc("n", 4)}, nil))
	if o.Change.Op != wire.OpUpsert {
		t.Fatalf("after a refetch the next change must be whole: %+v", o.Change)
	}
	// A change the source could not decode.
	o = one(t, m.Map(&changefeed.Change{Collection: "c", ID: "2", Op: changefeed.Insert, Version: "6", After: doc("n", 1), Err: errTest}, nil))
	if o.Change.Op != wire.OpRefetch || o.Change.Reason != "unencodable" {
		t.Fatalf("%+v", o.Change)
	}
}

var errTest = jsonErr("cannot decode")

type jsonErr string

func (e jsonErr) Error() string { return string(e) }

func TestMapperKeyChange(t *testing.T) {
	m := newTestMapper(t, Mapping{Collection: "c", Hub: "h", Group: "{/g}", Method: "t"})
	m.Map(&changefeed.Change{Collection: "c", ID: "1", Op: changefeed.Insert, Version: "1", After: doc("id", 1, "g", "x", "big", "B")}, nil)
	outs := m.Map(&changefeed.Change{Collection: "c", ID: "2", PrevID: "1", Op: changefeed.Update, Version: "2",
		Before: doc("id", 1), BeforePartial: true, After: doc("id", 2, "g", "x"), Unchanged: []string{"big"}}, nil)
	if len(outs) != 2 || outs[0].Change.Op != wire.OpDelete || outs[0].Change.ID != "1" ||
		outs[1].Change.Op != wire.OpUpsert || outs[1].Change.ID != "2" || !strings.Contains(string(outs[1].Change.Doc), `"big":"B"`) {
		t.Fatalf("key change: %+v", outs)
	}
}

func TestBuildBatchPayload(t *testing.T) {
	m := newTestMapper(t, Mapping{Collection: "c", Hub: "h", Group: "g", Method: "t"})
	var items []Pending
	for i, id := range []string{"a", "b"} {
		o := one(t, m.Map(&changefeed.Change{Collection: "c", ID: id, Op: changefeed.Insert, Version: "1", After: doc("x", i)}, nil))
		items = append(items, Pending{Out: &o, Ticket: uint64(i)})
	}
	b := BuildBatch("src", items[0].Out.Audience, items)
	want, _ := json.Marshal(b.Envelope)
	if string(b.Payload) != string(want) {
		t.Fatalf("payload\n%s\nwant\n%s", b.Payload, want)
	}
}

// A routing change of a document the mapper has not seen (no shadow entry)
// is still a move when the change carries the full before-image.
func TestMapperMoveFromBeforeImage(t *testing.T) {
	m := newTestMapper(t, Mapping{Collection: "c", Hub: "h", Group: "g-{/tenant}", Method: "t"})
	outs := m.Map(&changefeed.Change{Collection: "c", ID: "4", Op: changefeed.Update, Version: "9",
		Before: doc("id", 4, "tenant", "acme"), After: doc("id", 4, "tenant", "globex")}, nil)
	if len(outs) != 2 || outs[0].Audience.Group != "g-acme" || outs[0].Change.Op != wire.OpDelete ||
		outs[1].Audience.Group != "g-globex" || outs[1].Change.Op != wire.OpUpsert {
		t.Fatalf("move without a shadow entry: %+v", outs)
	}
	// With only the key in the before-image nothing can be known: one upsert.
	outs = m.Map(&changefeed.Change{Collection: "c", ID: "5", Op: changefeed.Update, Version: "10",
		Before: doc("id", 5), BeforePartial: true, After: doc("id", 5, "tenant", "globex")}, nil)
	if len(outs) != 1 || outs[0].Change.Op != wire.OpUpsert {
		t.Fatalf("%+v", outs)
	}
}

// TestMapperShadowKeepsColdDocumentsEncoded: a document seen once is kept
// encoded (nothing for the garbage collector to walk), one changed again
// decoded; patches are the same either way, values (numbers as written,
// nested arrays) included.
func TestMapperShadowKeepsColdDocumentsEncoded(t *testing.T) {
	m := newTestMapper(t, Mapping{Collection: "c", Hub: "h", Method: "t"})
	key := shadowKey{rule: 0, id: "1"}
	entry := func() shadowEntry {
		t.Helper()
		n := m.shadow.find(key)
		ok := n != nil
		if !ok {
			t.Fatal("document not in the shadow")
		}
		return n.e
	}
	v1 := doc("id", json.Number("1"), "total", json.Number("1.50"), "tags", []any{"a", doc("b", json.Number("2"))}, "note", strings.Repeat("n", 80))
	m.Map(&changefeed.Change{Collection: "c", ID: "1", Op: changefeed.Insert, Version: "1", After: v1}, nil)
	if e := entry(); e.doc != nil || e.raw == nil {
		t.Fatalf("seen once: doc %v, raw %q; want it kept encoded only", e.doc, e.raw)
	}
	v2 := doc("id", json.Number("1"), "total", json.Number("2.50"), "tags", []any{"a", doc("b", json.Number("2"))}, "note", strings.Repeat("n", 80))
	o := one(t, m.Map(&changefeed.Change{Collection: "c", ID: "1", Op: changefeed.Update, Version: "2", After: v2}, nil))
	if o.Change.Op != wire.OpPatch || string(o.Change.Patch) != `[{"op":"replace","path":"/total","value":2.50}]` {
		t.Fatalf("patch against the encoded copy: %+v %s", o.Change, o.Change.Patch)
	}
	if e := entry(); e.doc == nil {
		t.Fatal("changed again: want it kept decoded")
	}
	v3 := doc("id", json.Number("1"), "total", json.Number("2.50"), "tags", []any{"a", doc("b", json.Number("3"))}, "note", strings.Repeat("n", 80))
	o = one(t, m.Map(&changefeed.Change{Collection: "c", ID: "1", Op: changefeed.Update, Version: "3", After: v3}, nil))
	if o.Change.Op != wire.OpPatch || string(o.Change.Patch) != `[{"op":"replace","path":"/tags/1/b","value":3}]` {
		t.Fatalf("patch against the decoded copy: %+v %s", o.Change, o.Change.Patch)
	}
}

// TestMapperRoutingIndexBefore: a partial before-image that holds the
// routing fields (BeforeRoutes, a Cosmos routing index entry) tells where
// the held version went, for a move and for a soft delete whose document
// moved since.
func TestMapperRoutingIndexBefore(t *testing.T) {
	m := newTestMapper(t, Mapping{Collection: "c", Hub: "h", Group: "g-{/tenant}", Method: "t"})
	outs := m.Map(&changefeed.Change{Collection: "c", ID: "4", Op: changefeed.Update, Version: "9",
		Before: doc("tenant", "acme"), BeforePartial: true, BeforeRoutes: true, After: doc("id", "4", "tenant", "globex")}, nil)
	if len(outs) != 2 || outs[0].Audience.Group != "g-acme" || outs[0].Change.Op != wire.OpDelete ||
		outs[1].Audience.Group != "g-globex" || outs[1].Change.Op != wire.OpUpsert {
		t.Fatalf("move from an index entry: %+v", outs)
	}
	d := one(t, m.Map(&changefeed.Change{Collection: "c", ID: "5", Op: changefeed.Delete, Version: "10",
		Before: doc("tenant", "acme"), BeforePartial: true, BeforeRoutes: true}, nil))
	if d.Audience.Group != "g-acme" || d.Change.Op != wire.OpDelete || m.Stats.Fallbacks != 0 || m.Stats.Unroutable != 0 {
		t.Fatalf("soft delete from an index entry: %+v %+v", d, m.Stats)
	}
}

// TestMapperPrevUnknownFallsBackToHub: when the source cannot tell where
// the held version went, a move and a soft delete tell the whole hub (a
// delete of the change's version), the upsert still goes to its group, and
// nothing is unroutable. Once the shadow knows, no fallback.
func TestMapperPrevUnknownFallsBackToHub(t *testing.T) {
	m := newTestMapper(t, Mapping{Collection: "c", Hub: "h", Group: "g-{/tenant}", Method: "t"})
	outs := m.Map(&changefeed.Change{Collection: "c", ID: "4", Op: changefeed.Update, Version: "9",
		PrevUnknown: true, After: doc("id", "4", "tenant", "globex")}, nil)
	hub := Audience{Hub: "h", Method: "t"}
	if len(outs) != 2 || outs[0].Audience != hub || outs[0].Change.Op != wire.OpDelete || outs[0].Change.V != "9" || outs[0].Change.ID != "4" ||
		outs[1].Audience.Group != "g-globex" || outs[1].Change.Op != wire.OpUpsert || outs[1].Change.V != "9" {
		t.Fatalf("unknown previous audience: %+v", outs)
	}
	// The shadow now knows g-globex: a move goes there, not to the hub.
	outs = m.Map(&changefeed.Change{Collection: "c", ID: "4", Op: changefeed.Update, Version: "10",
		PrevUnknown: true, After: doc("id", "4", "tenant", "acme")}, nil)
	if len(outs) != 2 || outs[0].Audience.Group != "g-globex" || outs[1].Audience.Group != "g-acme" {
		t.Fatalf("move known from the shadow: %+v", outs)
	}
	// A soft delete of an unknown document: the whole hub.
	d := one(t, m.Map(&changefeed.Change{Collection: "c", ID: "7", Op: changefeed.Delete, Version: "11",
		PrevUnknown: true, Before: doc("id", "7", "tenant", "acme", "_deleted", true)}, nil))
	if d.Audience != hub || d.Change.Op != wire.OpDelete || d.Change.Collection != "c" || d.Change.Doc != nil {
		t.Fatalf("soft delete of an unknown document: %+v", d)
	}
	if m.Stats.Fallbacks != 2 || m.Stats.Unroutable != 0 {
		t.Fatalf("stats %+v", m.Stats)
	}
	// A hub-wide mapping needs no fallback: its audience never changes.
	hm := newTestMapper(t, Mapping{Collection: "c", Hub: "h", Method: "t"})
	if o := one(t, hm.Map(&changefeed.Change{Collection: "c", ID: "4", Op: changefeed.Update, Version: "9",
		PrevUnknown: true, After: doc("id", "4")}, nil)); o.Change.Op != wire.OpUpsert || hm.Stats.Fallbacks != 0 {
		t.Fatalf("hub-wide mapping: %+v %+v", o, hm.Stats)
	}
}

// Under a mapping keyed by the routing field, a move changes the key: the
// index entry's key fields name the id the old group holds.
func TestMapperRoutingIndexKeyMove(t *testing.T) {
	m := newTestMapper(t, Mapping{Collection: "c", Hub: "h", Group: "g-{/tenant}", Key: []string{"/tenant", "/id"}, Method: "t"})
	outs := m.Map(&changefeed.Change{Collection: "c", ID: "4", Op: changefeed.Update, Version: "9",
		Before: doc("tenant", "acme", "id", "4"), BeforePartial: true, BeforeRoutes: true, After: doc("id", "4", "tenant", "globex")}, nil)
	if len(outs) != 2 || outs[0].Audience.Group != "g-acme" || outs[0].Change.Op != wire.OpDelete || outs[0].Change.ID != `["acme","4"]` ||
		outs[1].Audience.Group != "g-globex" || outs[1].Change.Op != wire.OpUpsert || outs[1].Change.ID != `["globex","4"]` {
		t.Fatalf("key move from an index entry: %+v", outs)
	}
	// Unmoved: one upsert, no delete.
	outs = m.Map(&changefeed.Change{Collection: "c", ID: "5", Op: changefeed.Update, Version: "10",
		Before: doc("tenant", "acme", "id", "5"), BeforePartial: true, BeforeRoutes: true, After: doc("id", "5", "tenant", "acme")}, nil)
	if o := one(t, outs); o.Change.Op != wire.OpUpsert || o.Audience.Group != "g-acme" {
		t.Fatalf("%+v", outs)
	}
}

// TestMapperReplayedKeyChangeDeletesTheOldKey: a stream replayed from an
// older position (PostgreSQL before 17 forgets a slot's confirmed
// position at a restart) sends the old key's insert again, whole (its
// shadow entry went with the key change); the replayed key change is a
// replay for the new key, but must still delete the old key, or a client
// without a tombstone for it keeps the resurrected document (found by
// make chaos: lost = 115 after a PostgreSQL restart).
func TestMapperReplayedKeyChangeDeletesTheOldKey(t *testing.T) {
	m := newTestMapper(t, Mapping{Collection: "c", Hub: "h", Group: "{/g}", Method: "t"})
	ins := &changefeed.Change{Collection: "c", ID: "210", Op: changefeed.Insert, Version: "1.1", After: doc("id", 210, "g", "t0")}
	move := &changefeed.Change{Collection: "c", ID: "373", PrevID: "210", Op: changefeed.Update, Version: "2.1",
		Before: doc("id", 210, "g", "t0"), After: doc("id", 373, "g", "t0")}
	later := &changefeed.Change{Collection: "c", ID: "373", Op: changefeed.Update, Version: "3.1",
		Before: doc("id", 373, "g", "t0"), After: doc("id", 373, "g", "t0", "n", 1)}
	for _, ch := range []*changefeed.Change{ins, move, later} {
		m.Map(ch, nil)
	}
	// The replay.
	if o := one(t, m.Map(ins, nil)); o.Change.Op != wire.OpUpsert || o.Change.ID != "210" {
		t.Fatalf("replayed insert: %+v", o)
	}
	o := one(t, m.Map(move, nil))
	if o.Change.Op != wire.OpDelete || o.Change.ID != "210" || o.Change.V != "2.1" || o.Audience.Group != "t0" {
		t.Fatalf("replayed key change: %+v, want the delete of 210 at 2.1 to t0", o)
	}
	if outs := m.Map(later, nil); len(outs) != 0 {
		t.Fatalf("replayed later change: %+v, want nothing (373 was sent at 3.1)", outs)
	}
}
