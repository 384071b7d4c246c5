package publish

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/changecast/changecast/schema/wire"
)

// BatchLimits bound one batch window.
type BatchLimits struct {
	MaxChanges int
	MaxBytes   int // of the encoded envelope
	MaxDelay   time.Duration
}

// envelopeOverhead is room for the envelope around the changes: source, hub,
// group names and punctuation. Names are bounded (hub 128, group 1024).
const envelopeOverhead = 2048

// Pending is one change waiting in a window, with the ticket its
// acknowledgement goes to.
type Pending struct {
	Out    Output
	Ticket uint64
}

type window struct {
	items  []Pending
	bytes  int
	opened time.Time
}

// Batcher groups outputs into one window per target, bounded by count,
// bytes and delay. It is a passive policy: its owner adds outputs, asks
// which windows are due, and takes them; it starts no goroutine and reads
// no clock of its own.
type Batcher struct {
	lim     BatchLimits
	windows map[Audience]*window
	order   []Audience // targets in the order their windows opened
}

// NewBatcher returns an empty batcher.
func NewBatcher(lim BatchLimits) *Batcher {
	return &Batcher{lim: lim, windows: map[Audience]*window{}}
}

// Add puts p in its target's window and reports whether that window is now
// full (count or bytes) and should be taken.
func (b *Batcher) Add(p Pending, now time.Time) (full bool) {
	t := p.Out.Audience
	w := b.windows[t]
	if w == nil {
		w = &window{opened: now}
		b.windows[t] = w
		b.order = append(b.order, t)
	}
	w.items = append(w.items, p)
	w.bytes += len(p.Out.Raw) + 1
	return b.full(w)
}

func (b *Batcher) full(w *window) bool {
	return len(w.items) >= b.lim.MaxChanges || w.bytes+envelopeOverhead >= b.lim.MaxBytes
}

// WouldOverflow reports whether adding p would take its window over the byte
// limit; the owner then takes the window first.
func (b *Batcher) WouldOverflow(p Pending) bool {
	w := b.windows[p.Out.Audience]
	return w != nil && len(w.items) > 0 && w.bytes+len(p.Out.Raw)+1+envelopeOverhead > b.lim.MaxBytes
}

// Ready lists the targets whose windows are full or older than MaxDelay at
// now (all of them when flush is true), oldest first.
func (b *Batcher) Ready(now time.Time, flush bool) []Audience {
	if flush {
		return append([]Audience(nil), b.order...)
	}
	// Windows are in the order they opened, and full ones are taken as they
	// fill (Add reports them), so the due ones are a prefix: stop at the
	// first that is not due instead of scanning every window per event.
	var out []Audience
	for _, t := range b.order {
		if now.Sub(b.windows[t].opened) < b.lim.MaxDelay {
			break
		}
		out = append(out, t)
	}
	return out
}

// NextDeadline is when the oldest window becomes due; ok is false when
// there are no windows.
func (b *Batcher) NextDeadline() (time.Time, bool) {
	if len(b.order) == 0 {
		return time.Time{}, false
	}
	return b.windows[b.order[0]].opened.Add(b.lim.MaxDelay), true
}

// Take removes and returns t's window.
func (b *Batcher) Take(t Audience) []Pending {
	w := b.windows[t]
	if w == nil {
		return nil
	}
	delete(b.windows, t)
	for i, x := range b.order {
		if x == t {
			b.order = append(b.order[:i], b.order[i+1:]...)
			break
		}
	}
	return w.items
}

// Len is the number of changes waiting.
func (b *Batcher) Len() int {
	n := 0
	for _, w := range b.windows {
		n += len(w.items)
	}
	return n
}

// BuildBatch encodes the envelope of items (all for t) from their already
// encoded changes, without encoding any change again.
func BuildBatch(source string, t Audience, items []Pending) *Batch {
	env := wire.Envelope{Source: source, Hub: t.Hub, Group: t.Group, User: t.User, Changes: make([]wire.Entry, len(items))}
	size := envelopeOverhead
	for i, p := range items {
		env.Changes[i] = p.Out.Change
		size += len(p.Out.Raw) + 1
	}
	var buf bytes.Buffer
	buf.Grow(size)
	head, _ := json.Marshal(wire.Envelope{Source: source, Hub: t.Hub, Group: t.Group, User: t.User})
	// head ends with `"changes":null}`; replace the null with the array.
	buf.Write(head[:len(head)-len(`null}`)])
	buf.WriteByte('[')
	for i, p := range items {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(p.Out.Raw)
	}
	buf.WriteString("]}")
	return &Batch{Audience: t, Envelope: env, Payload: buf.Bytes()}
}
