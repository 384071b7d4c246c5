package changefeed

// Tracker turns out-of-order acknowledgements into an in-order checkpoint.
// Each event read from a source gets a ticket in source order; tickets are
// acknowledged in any order as their batches are published; the watermark
// is the position of the last event of the longest fully acknowledged
// prefix. That is the at-least-once rule: a position is checkpointed only
// once everything before it was published.
//
// It is a plain data structure used from one goroutine.
type Tracker struct {
	base    uint64 // ticket of entries[head]
	head    int
	entries []trackEntry
	mark    Position
}

type trackEntry struct {
	pos   Position
	acked bool
}

// Add registers the next event, with the position it makes resumable (or
// empty), and returns its ticket.
func (t *Tracker) Add(pos Position) uint64 {
	if t.head > 1024 && t.head*2 > len(t.entries) {
		// Compact: drop the popped prefix so memory follows the backlog.
		n := copy(t.entries, t.entries[t.head:])
		t.entries = t.entries[:n]
		t.head = 0
	}
	t.entries = append(t.entries, trackEntry{pos: pos})
	return t.base + uint64(len(t.entries)-t.head-1)
}

// Ack marks a ticket as published. Acking a ticket twice or one already
// passed is harmless.
func (t *Tracker) Ack(ticket uint64) {
	if ticket < t.base {
		return
	}
	i := t.head + int(ticket-t.base)
	if i < len(t.entries) {
		t.entries[i].acked = true
	}
}

// Advance pops the acknowledged prefix and returns the new watermark, and
// whether it moved.
func (t *Tracker) Advance() (Position, bool) {
	moved := false
	for t.head < len(t.entries) && t.entries[t.head].acked {
		if p := t.entries[t.head].pos; p != "" {
			t.mark = p
			moved = true
		}
		t.entries[t.head] = trackEntry{}
		t.head++
		t.base++
	}
	return t.mark, moved
}

// Next is the ticket of the first event not yet popped: every ticket below
// it was acknowledged and is covered by the watermark.
func (t *Tracker) Next() uint64 { return t.base }

// Pending is the number of events not yet popped.
func (t *Tracker) Pending() int { return len(t.entries) - t.head }

// Watermark is the last position returned by Advance.
func (t *Tracker) Watermark() Position { return t.mark }
