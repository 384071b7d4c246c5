package inflight

import (
	"net/http/httptest"
	"testing"

	"github.com/changecast/changecast/publish/hub"
)

// A caller is its user on its hub (hub names are case-insensitive); an
// anonymous caller is its address, whatever port or user id a request
// has. Each has max places; a release gives one back.
func TestLimiterPerCaller(t *testing.T) {
	r1 := httptest.NewRequest("GET", "/snapshot", nil)
	r1.RemoteAddr = "10.0.0.1:4000"
	r2 := httptest.NewRequest("GET", "/snapshot", nil)
	r2.RemoteAddr = "10.0.0.1:4001"
	r3 := httptest.NewRequest("GET", "/snapshot", nil)
	r3.RemoteAddr = "10.0.0.2:4000"
	anon := func(u string) hub.Caller { return hub.Caller{Hub: "h", User: u, Anonymous: true} }
	if Key(r1, anon("a1")) != Key(r2, anon("a2")) || Key(r1, anon("a1")) == Key(r3, anon("a1")) {
		t.Fatal("anonymous callers are not keyed by their address alone")
	}
	ann := hub.Caller{Hub: "Orders", User: "ann"}
	if Key(r1, ann) != Key(r3, hub.Caller{Hub: "orders", User: "ann"}) || Key(r1, ann) == Key(r1, hub.Caller{Hub: "orders", User: "bob"}) {
		t.Fatal("users are not keyed by hub and user")
	}

	l := New(2)
	rel1, ok1 := l.Acquire("ann")
	_, ok2 := l.Acquire("ann")
	_, ok3 := l.Acquire("ann")
	_, okBob := l.Acquire("bob")
	if !ok1 || !ok2 || ok3 || !okBob {
		t.Fatalf("places: %v %v %v, bob %v", ok1, ok2, ok3, okBob)
	}
	rel1()
	if _, ok := l.Acquire("ann"); !ok {
		t.Fatal("a released place is not given back")
	}
}
