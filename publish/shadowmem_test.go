package publish

import (
	"context"
	"strings"
	"testing"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/schema/wire"
)

// TestMemoryShadowStore: the newest version of a key wins whatever the
// order of saves; a prefix forgets older versions below it; the store
// keeps the most recently saved documents up to its size.
func TestMemoryShadowStore(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryShadowStore(3)
	a := Audience{Hub: "h", Group: "g1"}
	s.Save(ctx, []ShadowRecord{{Key: "m/1", V: "10", Doc: []byte(`{"v":10}`), Audience: a}, {Key: "m/1", V: "9", Doc: []byte(`{"v":9}`)}})
	s.Save(ctx, []ShadowRecord{{Key: "m/1", V: "2", Doc: []byte(`{"v":2}`)}}) // a late save of an older version
	if r, ok, _ := s.Load(ctx, "m/1"); !ok || r.V != "10" || string(r.Doc) != `{"v":10}` || r.Audience != a {
		t.Fatalf("m/1 = %+v %v, want version 10 in g1", r, ok)
	}
	s.Save(ctx, []ShadowRecord{{Key: "m/2", V: "11"}, {Key: "n/1", V: "3"}})
	s.Save(ctx, []ShadowRecord{{Key: "m/", V: "11", Prefix: true}}) // a truncate at 11
	if _, ok, _ := s.Load(ctx, "m/1"); ok {
		t.Fatal("m/1 (version 10) survived a truncate at 11")
	}
	if _, ok, _ := s.Load(ctx, "m/2"); !ok {
		t.Fatal("m/2 (version 11) was dropped by a truncate at 11")
	}
	if _, ok, _ := s.Load(ctx, "n/1"); !ok {
		t.Fatal("another mapping's key was dropped")
	}
	s.Save(ctx, []ShadowRecord{{Key: "m/3", V: "12"}, {Key: "m/4", V: "13"}})
	if _, ok, _ := s.Load(ctx, "m/2"); ok {
		t.Fatal("the least recently saved key stayed beyond the size")
	}
	for _, k := range []string{"n/1", "m/3", "m/4"} {
		if _, ok, _ := s.Load(ctx, k); !ok {
			t.Fatalf("%s was dropped", k)
		}
	}
}

// TestMapperSharesAMemoryShadowStore: two mappers (two leases of one
// process) share what was published through a MemoryShadowStore: the
// second patches against the first's version and sends a routing move's
// delete to the group the first sent the document to; a replay of a
// version only the store knows goes out whole (a checkpoint reset), while
// a store that decides what was delivered (pgshadow) skips it.
func TestMapperSharesAMemoryShadowStore(t *testing.T) {
	ctx := context.Background()
	mapping := Mapping{Collection: "c", Hub: "h", Group: "{/g}", Method: "t"}
	mem := NewMemoryShadowStore(100)
	newMapper := func(store ShadowStore) *Mapper {
		m, err := NewMapper([]Mapping{mapping}, MapperOptions{ShadowSize: 100, MaxChangeBytes: 2000, Store: store})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	publish := func(store ShadowStore, outs []Output) {
		for _, o := range outs {
			if o.Save != nil {
				store.Save(ctx, []ShadowRecord{*o.Save})
			}
		}
	}
	parent := newMapper(mem)
	publish(mem, parent.Map(&changefeed.Change{Collection: "c", ID: "1", Op: changefeed.Update, Version: "10", After: doc("g", "a", "n", 1, "text", strings.Repeat("long text ", 20))}, nil))

	child := newMapper(mem)
	p := one(t, child.Map(&changefeed.Change{Collection: "c", ID: "1", Op: changefeed.Update, Version: "11", After: doc("g", "a", "n", 2, "text", strings.Repeat("long text ", 20))}, nil))
	if p.Change.Op != wire.OpPatch || p.Change.PV != "10" {
		t.Fatalf("the child's first change: %+v, want a patch from the parent's version 10", p.Change)
	}
	other := newMapper(mem)
	publish(mem, child.Map(&changefeed.Change{Collection: "c", ID: "2", Op: changefeed.Update, Version: "12", After: doc("g", "a")}, nil))
	outs := other.Map(&changefeed.Change{Collection: "c", ID: "2", Op: changefeed.Update, Version: "13", After: doc("g", "b")}, nil)
	if len(outs) != 2 || outs[0].Change.Op != wire.OpDelete || outs[0].Audience.Group != "a" || outs[1].Audience.Group != "b" {
		t.Fatalf("a move in a pipeline that never saw the document: %+v, want a delete in a, then b", outs)
	}

	// A replay after a reset: version 5, below what the store holds.
	replay := &changefeed.Change{Collection: "c", ID: "1", Op: changefeed.Update, Version: "5", After: doc("g", "a", "n", 0)}
	if u := one(t, newMapper(mem).Map(replay, nil)); u.Change.Op != wire.OpUpsert || u.Change.V != "5" {
		t.Fatalf("a replay with a memory store: %+v, want it whole", u.Change)
	}
	durable := &memShadowStore{recs: map[string]ShadowRecord{}}
	publish(durable, newMapper(durable).Map(&changefeed.Change{Collection: "c", ID: "1", Op: changefeed.Update, Version: "10", After: doc("g", "a")}, nil))
	if outs := newMapper(durable).Map(replay, nil); len(outs) != 0 {
		t.Fatalf("a replay with a store that decides what was delivered: %+v, want it skipped", outs)
	}
}

// memShadowStore is a ShadowStore without PassesReplays, as pgshadow is.
type memShadowStore struct{ recs map[string]ShadowRecord }

func (s *memShadowStore) Load(_ context.Context, key string) (ShadowRecord, bool, error) {
	r, ok := s.recs[key]
	return r, ok, nil
}

func (s *memShadowStore) Save(_ context.Context, recs []ShadowRecord) error {
	for _, r := range recs {
		s.recs[r.Key] = r
	}
	return nil
}
