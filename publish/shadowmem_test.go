package publish

import (
	"context"
	"testing"
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
