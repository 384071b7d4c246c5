package history

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// history.maxBytes of the memory store: the envelopes of every stream
// together stay within MaxBytes, and what goes is the oldest, whatever its
// stream; a reader behind what was dropped is told to resync.
func TestMemoryMaxBytes(t *testing.T) {
	ctx := context.Background()
	const maxBytes = 10_000
	m := NewMemory(Limits{MaxBytes: maxBytes})
	type appended struct {
		stream string
		e      Entry
	}
	var all []appended
	for i := range 30 {
		stream := []string{"h/g/a", "h/g/b", "h/g/c"}[i%3]
		// Sizes differ, so a count of entries cannot stand for the bytes.
		tail := fmt.Sprintf(`,"changes":[{"op":"upsert","collection":"c","id":"%d","v":"%d","doc":{"s":%q}}]}`, i, i+1, strings.Repeat("x", 300+37*i))
		e, err := m.Append(ctx, stream, []byte(`{"source":"t","hub":"h"`), []byte(tail))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, appended{stream, e})
	}
	// The newest appends whose bytes fit, and nothing older.
	var want []appended
	var total int
	for i := len(all) - 1; i >= 0 && total+len(all[i].e.Payload) <= maxBytes; i-- {
		total += len(all[i].e.Payload)
		want = append([]appended{all[i]}, want...)
	}
	if len(want) == len(all) || len(want) == 0 {
		t.Fatalf("the test's appends (%d) should overflow %d bytes partly", len(all), maxBytes)
	}
	kept := map[string]bool{}
	var keptBytes int
	for _, stream := range []string{"h/g/a", "h/g/b", "h/g/c"} {
		epoch, last, err := m.Last(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		// Read from the stream's first offset on: the oldest are gone.
		var payloads [][]byte
		for after := uint64(0); after < last; after++ {
			p, _, err := m.Read(ctx, stream, epoch, after, 0)
			var re *ResyncError
			if errors.As(err, &re) {
				continue // dropped
			}
			if err != nil {
				t.Fatal(err)
			}
			payloads = p
			break
		}
		for _, p := range payloads {
			kept[string(p)] = true
			keptBytes += len(p)
		}
	}
	if keptBytes > maxBytes {
		t.Errorf("the store keeps %d bytes, over maxBytes %d", keptBytes, maxBytes)
	}
	if len(kept) != len(want) {
		t.Errorf("the store keeps %d envelopes, want the newest %d that fit", len(kept), len(want))
	}
	for _, a := range want {
		if !kept[string(a.e.Payload)] {
			t.Errorf("%s offset %d, among the newest that fit, was dropped", a.stream, a.e.Offset)
		}
	}
	// A reader that read up to before the dropped ones must resync.
	first := all[0]
	if _, _, err := m.Read(ctx, first.stream, first.e.Epoch, 0, 0); !errors.As(err, new(*ResyncError)) {
		t.Errorf("reading %s from the start after its oldest was dropped: %v, want a resync", first.stream, err)
	}
}
