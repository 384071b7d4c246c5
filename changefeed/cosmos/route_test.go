package cosmos

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/schema/template"
)

func mustPointers(t *testing.T, ss ...string) []template.Pointer {
	t.Helper()
	out := make([]template.Pointer, len(ss))
	for i, s := range ss {
		p, err := template.ParsePointer(s)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = p
	}
	return out
}

// The seed's rule: at or below the checkpoint a document is known where its
// fields route it; above, unknown; soft-deleted, held nowhere; the newest
// of two sightings wins.
func TestRouteIndexSeedRule(t *testing.T) {
	x := newRouteIndex(mustPointers(t, "/tenant", "/a/b"))
	const cp = 50
	x.seedItemRaw([]byte(`{"id":"known","tenant":"acme","a":{"b":7},"_lsn":40}`), nil, cp)
	x.seedItemRaw([]byte(`{"id":"atcp","tenant":"acme","_lsn":50}`), nil, cp)
	x.seedItemRaw([]byte(`{"id":"after","tenant":"acme","_lsn":51}`), nil, cp)
	del := mustPointers(t, "/_deleted")[0]
	x.seedItemRaw([]byte(`{"id":"gone","tenant":"acme","_deleted":true,"_lsn":30}`), del, cp)
	x.seedItemRaw([]byte(`{"id":"twice","tenant":"globex","_lsn":60}`), nil, cp)
	x.seedItemRaw([]byte(`{"id":"twice","tenant":"acme","_lsn":20}`), nil, cp)
	x.seedItemRaw([]byte(`not json`), nil, cp)
	x.seedItemRaw([]byte(`{"id":"nolsn","tenant":"acme"}`), nil, cp)

	get := func(id string) *changefeed.Change {
		ch := &changefeed.Change{ID: id, Op: changefeed.Update, After: map[string]any{"tenant": "new"}}
		x.before(ch)
		return ch
	}
	if ch := get("known"); !ch.BeforeRoutes || !ch.BeforePartial || ch.PrevUnknown ||
		!reflect.DeepEqual(ch.Before, map[string]any{"tenant": "acme", "a": map[string]any{"b": any(jsonNumber("7"))}}) {
		t.Fatalf("known: %+v", ch)
	}
	if ch := get("atcp"); !ch.BeforeRoutes || ch.Before["tenant"] != "acme" {
		t.Fatalf("at the checkpoint: %+v", ch)
	}
	for _, id := range []string{"after", "twice"} {
		if ch := get(id); !ch.PrevUnknown || ch.Before != nil {
			t.Fatalf("%s: %+v", id, ch)
		}
	}
	for _, id := range []string{"gone", "never", "nolsn"} {
		if ch := get(id); ch.PrevUnknown || ch.Before != nil || ch.BeforeRoutes {
			t.Fatalf("%s is held nowhere: %+v", id, ch)
		}
	}
	// A soft delete of a document held nowhere keeps its own document.
	own := map[string]any{"tenant": "acme", "_deleted": true}
	sd := &changefeed.Change{ID: "gone", Op: changefeed.Delete, Before: own}
	x.before(sd)
	if sd.BeforeRoutes || sd.PrevUnknown || !reflect.DeepEqual(sd.Before, own) {
		t.Fatalf("soft delete of an unheld document: %+v", sd)
	}
}

// Without a checkpoint LSN (checkpoint -1: a time start) nothing is known.
func TestRouteIndexNoCheckpointKnowsNothing(t *testing.T) {
	x := newRouteIndex(mustPointers(t, "/tenant"))
	x.seedItemRaw([]byte(`{"id":"1","tenant":"acme","_lsn":1}`), nil, -1)
	ch := &changefeed.Change{ID: "1", Op: changefeed.Update, After: map[string]any{"tenant": "x"}}
	x.before(ch)
	if !ch.PrevUnknown {
		t.Fatalf("%+v", ch)
	}
}

// The index follows what the source emits: an update makes the document
// known where it went, a delete removes it, an undecodable one makes it
// unknown; a blind index (a split under the seed) knows nothing.
func TestRouteIndexFollows(t *testing.T) {
	x := newRouteIndex(mustPointers(t, "/tenant"))
	x.follow(&changefeed.Change{ID: "1", Op: changefeed.Update, After: map[string]any{"tenant": "acme"}})
	ch := &changefeed.Change{ID: "1", Op: changefeed.Update, After: map[string]any{"tenant": "globex"}}
	x.before(ch)
	x.follow(ch)
	if ch.Before["tenant"] != "acme" || !ch.BeforeRoutes {
		t.Fatalf("%+v", ch)
	}
	d := &changefeed.Change{ID: "1", Op: changefeed.Delete, Before: map[string]any{"tenant": "globex", "_deleted": true}}
	x.before(d)
	x.follow(d)
	if d.Before["tenant"] != "globex" || !d.BeforeRoutes {
		t.Fatalf("delete: %+v", d)
	}
	again := &changefeed.Change{ID: "1", Op: changefeed.Update, After: map[string]any{"tenant": "acme"}}
	x.before(again)
	if again.Before != nil || again.PrevUnknown {
		t.Fatalf("after its delete, nobody holds it: %+v", again)
	}
	x.follow(&changefeed.Change{ID: "2", Op: changefeed.Update, Err: errTest})
	bad := &changefeed.Change{ID: "2", Op: changefeed.Update, After: map[string]any{"tenant": "acme"}}
	x.before(bad)
	if !bad.PrevUnknown {
		t.Fatalf("after a refetch marker: %+v", bad)
	}
	x.blind = true
	b := &changefeed.Change{ID: "9", Op: changefeed.Update, After: map[string]any{"tenant": "acme"}}
	x.before(b)
	if !b.PrevUnknown {
		t.Fatalf("blind: %+v", b)
	}
}

var errTest = errors.New("test")

func jsonNumber(s string) json.Number { return json.Number(s) }

// FuzzSeedItem: a change feed item read while seeding is outside bytes. Any
// of them leaves the index consistent: nothing panics, and an entry is
// known only at or below the checkpoint.
func FuzzSeedItem(f *testing.F) {
	f.Add([]byte(`{"id":"1","tenant":"acme","a":{"b":[1,2]},"_lsn":40}`), int64(50))
	f.Add([]byte(`{"id":"1","tenant":"acme","_deleted":true,"_lsn":40}`), int64(50))
	f.Add([]byte(`{"id":1.5e300,"_lsn":"7"}`), int64(10))
	f.Add([]byte(`{"id":"x","_lsn":99999999999999999999}`), int64(-1))
	f.Add([]byte(`[]`), int64(0))
	fields, err := template.ParsePointer("/a/b")
	if err != nil {
		f.Fatal(err)
	}
	tenant, _ := template.ParsePointer("/tenant")
	del, _ := template.ParsePointer("/_deleted")
	f.Fuzz(func(t *testing.T, raw []byte, checkpoint int64) {
		x := newRouteIndex([]template.Pointer{tenant, fields})
		x.seedItemRaw(raw, del, checkpoint)
		for id, e := range x.docs {
			if e.known && e.lsn > checkpoint {
				t.Fatalf("%s known at %d above the checkpoint %d", id, e.lsn, checkpoint)
			}
			ch := &changefeed.Change{ID: id, Op: changefeed.Update, After: map[string]any{}}
			x.before(ch)
			if ch.BeforeRoutes == ch.PrevUnknown {
				t.Fatalf("%s: known and unknown at once, or neither: %+v", id, ch)
			}
		}
	})
}
