package publish

import (
	"testing"
	"time"
)

func pendingFor(a Audience, ticket uint64, size int) Pending {
	return Pending{Out: &Output{Audience: a, Raw: make([]byte, size)}, Ticket: ticket}
}

// next takes the next batch or fails.
func next(t *testing.T, b *Batcher, now time.Time, flush bool) (Audience, []Pending) {
	t.Helper()
	a, items, ok := b.Next(now, flush)
	if !ok {
		t.Fatal("no batch due")
	}
	return a, items
}

func noneDue(t *testing.T, b *Batcher, now time.Time) {
	t.Helper()
	if a, items, ok := b.Next(now, false); ok {
		t.Fatalf("batch of %d for %v due, want none", len(items), a)
	}
}

// TestBatcherAdaptive: with no linger, an idle audience's change is due at
// once; while its batch is in flight changes accumulate, cut at MaxChanges,
// and go out in order when it completes.
func TestBatcherAdaptive(t *testing.T) {
	now := nowForTest()
	b := NewBatcher(BatchLimits{MaxChanges: 3, MaxBytes: 64 << 10})
	g := Audience{Hub: "h", Group: "g"}
	b.Add(pendingFor(g, 1, 10), now)
	a, items := next(t, b, now, false)
	if a != g || len(items) != 1 || items[0].Ticket != 1 {
		t.Fatalf("first change not sent alone at once: %v %v", a, items)
	}
	for i := uint64(2); i <= 6; i++ {
		b.Add(pendingFor(g, i, 10), now)
	}
	noneDue(t, b, now) // g's batch is in flight
	if b.Len() != 5 {
		t.Fatalf("Len %d, want 5", b.Len())
	}
	b.Done(g, now)
	_, items = next(t, b, now, false)
	if len(items) != 3 || items[0].Ticket != 2 || items[2].Ticket != 4 {
		t.Fatalf("after completion got %v, want tickets 2-4 (MaxChanges 3)", tickets(items))
	}
	noneDue(t, b, now)
	b.Done(g, now)
	_, items = next(t, b, now, false)
	if len(items) != 2 || items[0].Ticket != 5 {
		t.Fatalf("then %v, want 5-6", tickets(items))
	}
	b.Done(g, now)
	noneDue(t, b, now)
	if b.Len() != 0 || len(b.streams) != 0 {
		t.Fatalf("idle batcher keeps %d changes, %d audiences", b.Len(), len(b.streams))
	}
}

func tickets(items []Pending) []uint64 {
	var out []uint64
	for _, it := range items {
		out = append(out, it.Ticket)
	}
	return out
}

// TestBatcherAudiencesIndependent: one audience in flight does not hold
// back another; ready audiences go oldest first.
func TestBatcherAudiencesIndependent(t *testing.T) {
	now := nowForTest()
	b := NewBatcher(BatchLimits{MaxChanges: 10, MaxBytes: 64 << 10})
	x, y, z := Audience{Hub: "h", Group: "x"}, Audience{Hub: "h", Group: "y"}, Audience{Hub: "h", User: "z"}
	b.Add(pendingFor(x, 1, 10), now)
	next(t, b, now, false)
	b.Add(pendingFor(x, 2, 10), now)
	b.Add(pendingFor(y, 3, 10), now)
	b.Add(pendingFor(z, 4, 10), now)
	if a, _ := next(t, b, now, false); a != y {
		t.Fatalf("got %v, want y", a)
	}
	if a, _ := next(t, b, now, false); a != z {
		t.Fatalf("got %v, want z", a)
	}
	noneDue(t, b, now)
}

// TestBatcherBytes: a change that would take a window over MaxBytes seals
// the window first.
func TestBatcherBytes(t *testing.T) {
	now := nowForTest()
	b := NewBatcher(BatchLimits{MaxChanges: 100, MaxBytes: 4096})
	g := Audience{Hub: "h", Group: "g"}
	b.Add(pendingFor(g, 1, 10), now)
	next(t, b, now, false) // in flight
	b.Add(pendingFor(g, 2, 1500), now)
	b.Add(pendingFor(g, 3, 1500), now) // 2×1.5 KB + envelope room > 4 KB
	b.Done(g, now)
	if _, items := next(t, b, now, false); len(items) != 1 || items[0].Ticket != 2 {
		t.Fatalf("got %v, want 2 alone", tickets(items))
	}
	b.Done(g, now)
	if _, items := next(t, b, now, false); len(items) != 1 || items[0].Ticket != 3 {
		t.Fatalf("got %v, want 3", tickets(items))
	}
}

// TestBatcherLinger: with MaxDelay an idle audience's window waits that long
// (or until full); flush sends it at once; a window that filled while the
// audience was in flight is sent when it completes.
func TestBatcherLinger(t *testing.T) {
	now := nowForTest()
	b := NewBatcher(BatchLimits{MaxChanges: 3, MaxBytes: 64 << 10, MaxDelay: 10 * ms})
	g, h := Audience{Hub: "h", Group: "g"}, Audience{Hub: "h", Group: "h"}
	b.Add(pendingFor(g, 1, 10), now)
	b.Add(pendingFor(h, 2, 10), now.Add(4*ms))
	if dl, ok := b.NextDeadline(); !ok || !dl.Equal(now.Add(10*ms)) {
		t.Fatalf("deadline %v %v, want +10ms", dl, ok)
	}
	noneDue(t, b, now.Add(9*ms))
	if a, _ := next(t, b, now.Add(10*ms), false); a != g {
		t.Fatalf("got %v, want g", a)
	}
	if dl, ok := b.NextDeadline(); !ok || !dl.Equal(now.Add(14*ms)) {
		t.Fatalf("deadline %v %v, want +14ms", dl, ok)
	}
	if a, _ := next(t, b, now.Add(11*ms), true); a != h {
		t.Fatalf("flush got %v, want h", a)
	}
	if _, ok := b.NextDeadline(); ok {
		t.Fatal("deadline with nothing lingering")
	}
	// g in flight: three changes fill a window, due on completion.
	for i := uint64(3); i <= 5; i++ {
		b.Add(pendingFor(g, i, 10), now.Add(12*ms))
	}
	noneDue(t, b, now.Add(12*ms))
	b.Done(g, now.Add(13*ms))
	if _, items := next(t, b, now.Add(13*ms), false); len(items) != 3 {
		t.Fatalf("full window got %v", tickets(items))
	}
	// A window opened while in flight lingers from its first change.
	b.Add(pendingFor(g, 6, 10), now.Add(14*ms))
	b.Done(g, now.Add(20*ms))
	noneDue(t, b, now.Add(23*ms))
	if _, items := next(t, b, now.Add(24*ms), false); len(items) != 1 || items[0].Ticket != 6 {
		t.Fatalf("got %v, want 6 at +24ms", tickets(items))
	}
}

// TestShadowLRU: the least recently used entry leaves when the shadow is
// full, gets refresh recency, and deleted entries free their place.
func TestShadowLRU(t *testing.T) {
	s := newShadow(2)
	k := func(id string) shadowKey { return shadowKey{id: id} }
	s.put(k("a"), shadowEntry{v: "1"})
	s.put(k("b"), shadowEntry{v: "1"})
	s.get(k("a")) // b is now the least recent
	s.put(k("c"), shadowEntry{v: "1"})
	if _, ok := s.get(k("b")); ok {
		t.Fatal("b survived as the least recent entry")
	}
	for _, id := range []string{"a", "c"} {
		if _, ok := s.get(k(id)); !ok {
			t.Fatalf("%s evicted", id)
		}
	}
	s.put(k("a"), shadowEntry{v: "2"})
	if e, _ := s.get(k("a")); e.v != "2" || s.n != 2 {
		t.Fatalf("update: %+v, %d entries", e, s.n)
	}
	s.del(k("c"))
	s.put(k("d"), shadowEntry{v: "1"})
	if _, ok := s.get(k("a")); !ok || s.n != 2 {
		t.Fatal("a deleted entry did not free its place")
	}
	s.dropRule(0)
	if s.n != 0 || s.head.next != &s.head {
		t.Fatal("dropRule left entries")
	}
}
