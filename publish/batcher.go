package publish

import (
	"slices"
	"time"

	"github.com/changecast/changecast/schema/wire"
)

// BatchLimits bound one batch.
type BatchLimits struct {
	MaxChanges int
	MaxBytes   int // of the encoded envelope
	// MaxDelay is an optional linger: how long a window of an idle audience
	// waits for more changes before it is sent. 0 (the default for the
	// built-in hub) sends at once when nothing is in flight; batches still
	// form while a batch of the audience is in flight (adaptive batching).
	MaxDelay time.Duration
}

// envelopeOverhead is room for the envelope around the changes: source, hub,
// group names and punctuation. Names are bounded (hub 128, group 1024).
const envelopeOverhead = 2048

// Pending is one change waiting in a window, with the ticket its
// acknowledgement goes to. Out points into the mapper's result, so windows
// and batches move 16 bytes per change, not the whole Output (profiling:
// growing windows of Outputs was the pipeline's largest allocation).
type Pending struct {
	Out    *Output
	Ticket uint64
}

// stream is the batching state of one audience.
type stream struct {
	a      Audience
	win    []Pending   // the open window
	bytes  int         // of win's encoded changes
	opened time.Time   // when win got its first change
	sealed [][]Pending // full windows, oldest first, sent before win
	busy   bool        // a batch of this audience is in flight
	listed bool        // in Batcher.ready
}

func (s *stream) empty() bool { return len(s.win) == 0 && len(s.sealed) == 0 }

// lingerEntry is an idle audience whose window is not due before at.
type lingerEntry struct {
	s  *stream
	at time.Time
}

// Batcher is adaptive batching as a passive policy. Each audience has an
// open window, full windows waiting (sealed), and at most one batch in
// flight, so its order holds. An audience with nothing in flight sends its
// window as soon as it has one (or once it is MaxDelay old, when a linger is
// set); while its batch is in flight, changes accumulate and go out together
// when it completes, cut at MaxChanges and MaxBytes. So batches are as small
// as one change at low load (latency) and grow with load (throughput),
// without a fixed window that every change waits for.
//
// The owner adds outputs, takes the next batch to send with Next (as many as
// its parallelism allows), and reports each finished batch with Done. It
// starts no goroutine and reads no clock of its own: the owner passes now
// and arms its own timer from NextDeadline.
type Batcher struct {
	lim     BatchLimits
	streams map[Audience]*stream
	ready   []*stream     // idle audiences with a batch to send now, FIFO
	linger  []lingerEntry // idle audiences whose window is not due yet, by due time; stale entries are skipped
	n       int           // changes waiting (not in flight)
}

// NewBatcher returns an empty batcher.
func NewBatcher(lim BatchLimits) *Batcher {
	return &Batcher{lim: lim, streams: map[Audience]*stream{}}
}

// Add puts p in its audience's window. A window that p would take over
// MaxBytes is sealed first; a window that reaches MaxChanges or MaxBytes is
// sealed after.
func (b *Batcher) Add(p Pending, now time.Time) {
	a := p.Out.Audience
	s := b.streams[a]
	if s == nil {
		s = &stream{a: a}
		b.streams[a] = s
	}
	size := len(p.Out.Raw) + 1
	if len(s.win) > 0 && s.bytes+size+envelopeOverhead > b.lim.MaxBytes {
		b.seal(s)
	}
	if len(s.win) == 0 {
		s.opened = now
	}
	s.win = append(s.win, p)
	s.bytes += size
	b.n++
	if len(s.win) >= b.lim.MaxChanges || s.bytes+envelopeOverhead >= b.lim.MaxBytes {
		b.seal(s)
	}
	b.schedule(s, now, len(s.win) == 1)
}

func (b *Batcher) seal(s *stream) {
	s.sealed = append(s.sealed, s.win)
	s.win, s.bytes = nil, 0
}

// schedule lists an idle audience that has something: ready when a batch is
// due, lingering otherwise. opened says its window was just opened (a
// lingering window is listed once, when it opens or its audience goes idle).
func (b *Batcher) schedule(s *stream, now time.Time, opened bool) {
	if s.busy || s.listed {
		return
	}
	switch {
	case len(s.sealed) > 0 || (len(s.win) > 0 && !now.Before(s.opened.Add(b.lim.MaxDelay))):
		s.listed = true
		b.ready = append(b.ready, s)
	case len(s.win) > 0 && opened:
		e := lingerEntry{s: s, at: s.opened.Add(b.lim.MaxDelay)}
		// Usually the latest deadline: insert from the end.
		i := len(b.linger)
		for i > 0 && b.linger[i-1].at.After(e.at) {
			i--
		}
		b.linger = slices.Insert(b.linger, i, e)
	}
}

// valid reports whether a lingering entry still stands for s's open window.
func (e lingerEntry) valid(b *Batcher) bool {
	s := e.s
	return !s.busy && !s.listed && len(s.win) > 0 && b.streams[s.a] == s && s.opened.Add(b.lim.MaxDelay).Equal(e.at)
}

// promote moves lingering windows due at now (all of them with flush) to
// ready.
func (b *Batcher) promote(now time.Time, flush bool) {
	i := 0
	for ; i < len(b.linger); i++ {
		e := b.linger[i]
		if !e.valid(b) {
			continue
		}
		if !flush && now.Before(e.at) {
			break
		}
		e.s.listed = true
		b.ready = append(b.ready, e.s)
	}
	b.linger = b.linger[i:]
	if flush {
		// Audiences whose window opened while their batch was in flight
		// and that went idle before it was due have no lingering entry.
		for _, s := range b.streams {
			if !s.busy && !s.listed && !s.empty() {
				s.listed = true
				b.ready = append(b.ready, s)
			}
		}
	}
}

// Next takes the next batch to send at now: the oldest sealed window of the
// first ready audience, or its open window; flush makes every window due
// (a soft stop, a barrier). The audience is in flight until Done. ok is
// false when nothing is due.
func (b *Batcher) Next(now time.Time, flush bool) (a Audience, items []Pending, ok bool) {
	b.promote(now, flush)
	for len(b.ready) > 0 {
		s := b.ready[0]
		b.ready[0] = nil
		b.ready = b.ready[1:]
		s.listed = false
		if s.busy || s.empty() {
			continue
		}
		if len(s.sealed) > 0 {
			items = s.sealed[0]
			s.sealed[0] = nil
			s.sealed = s.sealed[1:]
		} else {
			items = s.win
			s.win, s.bytes = nil, 0
		}
		s.busy = true
		b.n -= len(items)
		return s.a, items, true
	}
	return Audience{}, nil, false
}

// Done reports that a's batch in flight finished (published or abandoned):
// what accumulated meanwhile is scheduled.
func (b *Batcher) Done(a Audience, now time.Time) {
	s := b.streams[a]
	if s == nil {
		return
	}
	s.busy = false
	if s.empty() {
		// Forget idle audiences, so memory follows the audiences active
		// now, not every user ever sent to.
		delete(b.streams, a)
		return
	}
	b.schedule(s, now, true)
}

// NextDeadline is when the earliest lingering window becomes due; ok is
// false when none lingers (always so without a linger).
func (b *Batcher) NextDeadline() (time.Time, bool) {
	for len(b.linger) > 0 {
		if e := b.linger[0]; e.valid(b) {
			return e.at, true
		}
		b.linger[0] = lingerEntry{}
		b.linger = b.linger[1:]
	}
	return time.Time{}, false
}

// Len is the number of changes waiting (not in flight).
func (b *Batcher) Len() int { return b.n }

// BuildBatch encodes the envelope of items (all for t) from their already
// encoded changes, without encoding any change again. The payload is
// json.Marshal(Envelope) byte for byte.
func BuildBatch(source string, t Audience, items []Pending) *Batch {
	env := wire.Envelope{Source: source, Hub: t.Hub, Group: t.Group, User: t.User, Changes: make([]wire.Entry, len(items))}
	size := len(`{"source":,"hub":,"group":,"user":,"changes":[]}`) + 2*6 + len(source) + len(t.Hub) + len(t.Group) + len(t.User) + len(items)
	for i, p := range items {
		env.Changes[i] = p.Out.Change
		size += len(p.Out.Raw)
	}
	// Names with characters to escape need more; append grows then.
	b := make([]byte, 0, size)
	b = append(b, `{"source":`...)
	b = wire.AppendString(b, source)
	b = append(b, `,"hub":`...)
	b = wire.AppendString(b, t.Hub)
	if t.Group != "" {
		b = append(b, `,"group":`...)
		b = wire.AppendString(b, t.Group)
	}
	if t.User != "" {
		b = append(b, `,"user":`...)
		b = wire.AppendString(b, t.User)
	}
	b = append(b, `,"changes":[`...)
	for i, p := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, p.Out.Raw...)
	}
	b = append(b, "]}"...)
	return &Batch{Audience: t, Envelope: env, Payload: b, Encoded: true}
}
