package snapshot

import (
	"testing"
	"time"

	"github.com/changecast/changecast/publish/hub"
)

// TestPrefetchCache: a page read ahead is served once, to the same caller
// asking for the same page, while fresh; the cache keeps at most max pages
// and makes room only by dropping stale finished ones.
func TestPrefetchCache(t *testing.T) {
	now := time.Unix(1000, 0)
	c := prefetchCache{pages: map[string]*prefetched{}, now: func() time.Time { return now }}
	done := func() *prefetched {
		p := &prefetched{done: make(chan struct{}), created: now}
		close(p.done)
		return p
	}
	acme := pageRequest{caller: hub.Caller{Hub: "orders", User: "u1", Groups: []string{"tenant-acme"}}, groups: []string{"tenant-acme"}, limit: 1000, cur: cursor{After: "x"}}
	others := map[string]pageRequest{}
	for name, f := range map[string]func(*pageRequest){
		"another user":   func(p *pageRequest) { p.caller.User = "u2" },
		"another group":  func(p *pageRequest) { p.groups = []string{"tenant-globex"} },
		"another page":   func(p *pageRequest) { p.cur.After = "y" },
		"another limit":  func(p *pageRequest) { p.limit = 10 },
		"anonymous":      func(p *pageRequest) { p.caller.Anonymous = true },
		"narrowed":       func(p *pageRequest) { p.narrowed = true },
		"another stream": func(p *pageRequest) { p.cur.Stream = 1 },
	} {
		q := acme
		q.groups = append([]string(nil), acme.groups...)
		f(&q)
		others[name] = q
	}
	p := done()
	if !c.put(acme.key(), p, 4) {
		t.Fatal("put into an empty cache")
	}
	for name, q := range others {
		if c.take(q.key()) != nil {
			t.Errorf("%s was served acme's page", name)
		}
	}
	if c.take(acme.key()) != p {
		t.Fatal("the same request did not get its page")
	}
	if c.take(acme.key()) != nil {
		t.Fatal("a page was served twice")
	}

	// Stale pages are not served.
	c.put(acme.key(), done(), 4)
	now = now.Add(prefetchTTL + time.Second)
	if c.take(acme.key()) != nil {
		t.Fatal("a stale page was served")
	}

	// At most max: room is made only from stale finished pages.
	running := &prefetched{done: make(chan struct{}), created: now}
	c.put("a", running, 2)
	c.put("b", done(), 2)
	if c.put("c", done(), 2) {
		t.Fatal("a third page kept with max 2")
	}
	now = now.Add(prefetchTTL + time.Second)
	if !c.put("c", done(), 2) {
		t.Fatal("no room made from a stale finished page")
	}
	if _, ok := c.pages["a"]; !ok {
		t.Fatal("a page still being read was dropped")
	}
}
