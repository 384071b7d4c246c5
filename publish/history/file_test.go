package history

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestMemoryFile: a saved memory store comes back with its epochs, offsets
// and envelopes, so appends and reads go on in the same epoch; the file is
// gone once read (a crash after it must be a new epoch); a torn or foreign
// file is refused, removed, and leaves the store empty.
func TestMemoryFile(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Now()}
	m := NewMemory(Limits{MaxMessages: 4, MaxAge: time.Minute})
	m.now = c.now
	a := appendN(t, m, "h/g/a", 6) // keeps 3..6
	c.add(time.Second)
	b := appendN(t, m, "h/u/b", 2)
	want, _, err := m.Read(ctx, "h/g/a", a.Epoch, 2, 10)
	if err != nil || len(want) != 4 {
		t.Fatalf("before saving: %d envelopes, %v", len(want), err)
	}
	path := filepath.Join(t.TempDir(), "history")
	if err := m.SaveFile(path); err != nil {
		t.Fatal(err)
	}

	load := func(t *testing.T) *Memory {
		t.Helper()
		n := NewMemory(Limits{MaxMessages: 4, MaxAge: time.Minute})
		n.now = c.now
		ok, err := n.LoadFile(path)
		if !ok || err != nil {
			t.Fatalf("LoadFile: %v %v", ok, err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Fatalf("the file is still there after loading: %v", err)
		}
		return n
	}
	n := load(t)
	got, _, err := n.Read(ctx, "h/g/a", a.Epoch, 2, 10)
	if err != nil || len(got) != len(want) {
		t.Fatalf("after loading: %d envelopes, %v", len(got), err)
	}
	for i := range got {
		if string(got[i]) != string(want[i]) {
			t.Fatalf("envelope %d: %s, want %s", i, got[i], want[i])
		}
	}
	if _, _, err := n.Read(ctx, "h/g/a", a.Epoch, 1, 10); !IsResync(err) {
		t.Fatalf("read before what was kept: %v, want a resync", err)
	}
	if e := appendN(t, n, "h/u/b", 1); e.Epoch != b.Epoch || e.Offset != 3 {
		t.Fatalf("append after loading: %+v, want offset 3 in epoch %s", e, b.Epoch)
	}
	if e, last, _ := n.Last(ctx, "h/g/a"); e != a.Epoch || last != 6 {
		t.Fatalf("Last after loading: %s %d", e, last)
	}
	// A new stream starts in this process's own epoch.
	if e := appendN(t, n, "h/g/new", 1); e.Epoch == a.Epoch || e.Epoch == b.Epoch || e.Offset != 1 {
		t.Fatalf("a new stream: %+v", e)
	}

	// No file: nothing to load, no error (a first start, or after a crash).
	if ok, err := NewMemory(Limits{}).LoadFile(path); ok || err != nil {
		t.Fatalf("LoadFile without a file: %v %v", ok, err)
	}

	// Saved long ago: what aged out is gone, the epoch stays.
	if err := n.SaveFile(path); err != nil {
		t.Fatal(err)
	}
	c.add(2 * time.Minute)
	old := load(t)
	if _, _, err := old.Read(ctx, "h/g/a", a.Epoch, 5, 10); !IsResync(err) {
		t.Fatalf("aged out: %v, want a resync", err)
	}
	if e, last, _ := old.Last(ctx, "h/g/a"); e != a.Epoch || last != 6 {
		t.Fatalf("Last of an aged-out stream: %s %d", e, last)
	}

	// Not a saved history.
	if err := os.WriteFile(path, []byte("not a history"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := NewMemory(Limits{})
	if ok, err := bad.LoadFile(path); ok || err == nil {
		t.Fatalf("LoadFile of garbage: %v %v, want an error", ok, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the unreadable file is still there: %v", err)
	}
	if e, last, _ := bad.Last(ctx, "h/g/a"); e == a.Epoch || last != 0 {
		t.Fatalf("after a bad file: %s %d, want a new epoch", e, last)
	}
}
