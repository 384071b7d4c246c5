package processor

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/schema/config"
	"github.com/changecast/changecast/schema/wire"
)

// Config tunes a Processor. Zero values take the documented defaults.
type Config struct {
	// Source labels envelopes, e.g. "postgres:app/changecast".
	Source string
	Batch  publish.BatchLimits
	// Parallelism bounds batches in flight across targets (one per target,
	// so each target keeps its order). Default 8.
	Parallelism int
	// MaxPending bounds events read but not yet checkpointed; reading pauses
	// above it. Default 20000.
	MaxPending int
	// DrainTimeout is how long a soft stop waits for in-flight batches
	// before it abandons them (unacknowledged, so they are read again on
	// restart). Default 30 s.
	DrainTimeout time.Duration
	// MaxBackoff caps the wait between publish retries. Default 5 s.
	MaxBackoff time.Duration
	Logger     *slog.Logger
	Metrics    *Metrics // nil: none
	// ShadowStore, when set, receives the shadow records of published
	// outputs before their changes are acknowledged (see
	// publish.ShadowStore). Give the same store to the mapper.
	ShadowStore publish.ShadowStore
}

func (c *Config) defaults() {
	if c.Parallelism <= 0 {
		c.Parallelism = config.DefaultParallelism
	}
	if c.MaxPending <= 0 {
		c.MaxPending = config.DefaultMaxPending
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.Batch.MaxChanges <= 0 {
		c.Batch.MaxChanges = config.DefaultMaxChanges
	}
	if c.Batch.MaxBytes <= 0 {
		c.Batch.MaxBytes = config.DefaultMaxBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Processor runs one source through the mapper, the batcher and the
// publisher, and checkpoints the source as batches are accepted.
type Processor struct {
	cfg Config
	src changefeed.Source
	m   *publish.Mapper
	pub publish.Publisher
}

// New returns a processor; Run starts it.
func New(cfg Config, src changefeed.Source, m *publish.Mapper, pub publish.Publisher) *Processor {
	cfg.defaults()
	return &Processor{cfg: cfg, src: src, m: m, pub: pub}
}

type result struct {
	target    publish.Audience
	items     []publish.Pending
	delivered bool
}

// loop is the state of one Run; only the Run goroutine touches it.
type loop struct {
	*Processor
	tracker  changefeed.Tracker
	batcher  *publish.Batcher
	refs     map[uint64]int
	saves    map[uint64][]publish.ShadowRecord        // records of published outputs, by change (ticket)
	queued   map[publish.Audience][][]publish.Pending // sealed batches waiting for their target
	qorder   []publish.Audience
	inflight map[publish.Audience]bool
	nflight  int
	done     chan result
	pubCtx   context.Context
	ctx      context.Context
}

// Run processes until ctx ends (soft stop: stop reading, publish what was
// read, checkpoint, return nil) or the source fails (the same drain, then
// the source's error).
func (p *Processor) Run(ctx context.Context) error {
	l := &loop{
		Processor: p,
		batcher:   publish.NewBatcher(p.cfg.Batch),
		refs:      map[uint64]int{},
		saves:     map[uint64][]publish.ShadowRecord{},
		queued:    map[publish.Audience][][]publish.Pending{},
		inflight:  map[publish.Audience]bool{},
		done:      make(chan result, p.cfg.Parallelism),
	}
	// Publishing outlives the soft stop so in-flight batches can finish;
	// hardStop cancels it.
	pubCtx, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hardStop()
	l.pubCtx = pubCtx
	l.ctx = ctx

	srcCtx, stopSrc := context.WithCancel(ctx)
	defer stopSrc()
	// Three stages on their own goroutines, so decoding, mapping (routing
	// and diffing, the heaviest step) and batching use separate cores:
	// source → events → mapStage → mapped → this loop.
	events := make(chan changefeed.Event, eventBuffer)
	srcDone := make(chan error, 1)
	go func() {
		err := p.src.Run(srcCtx, events)
		close(events) // Run has returned: nothing sends on events any more
		srcDone <- err
	}()
	mappedCh := make(chan mapped, mappedBuffer)
	quit := make(chan struct{})
	stageDone := make(chan struct{})
	go p.mapStage(events, mappedCh, quit, stageDone)
	defer func() {
		close(quit)
		<-stageDone
	}()

	var (
		srcErr     error
		mappedDone bool
		stopping   bool
		drainTimer <-chan time.Time
		timer      = time.NewTimer(time.Hour)
	)
	defer timer.Stop()
	stop := func() {
		if !stopping {
			stopping = true
			stopSrc()
			drainTimer = time.After(p.cfg.DrainTimeout)
		}
	}
	for {
		var in <-chan mapped
		// Read while under MaxPending (backpressure); once publishing is
		// abandoned, read only to discard, so the stages can finish.
		if !mappedDone && (l.tracker.Pending() < p.cfg.MaxPending || pubCtx.Err() != nil) {
			in = mappedCh
		}
		if dl, ok := l.batcher.NextDeadline(); ok && !stopping {
			timer.Reset(time.Until(dl))
		} else {
			timer.Reset(time.Hour)
		}
		select {
		case m, ok := <-in:
			switch {
			case !ok:
				// The source returned and every event it sent was mapped.
				mappedDone = true
				if err := <-srcDone; err != nil && ctx.Err() == nil {
					srcErr = err
					p.cfg.Logger.Error("source failed; draining and stopping", "err", err)
				}
				stop()
			case pubCtx.Err() == nil:
				l.handle(m)
			}
		case r := <-l.done:
			l.complete(r)
		case <-timer.C:
		case <-ctx.Done():
			stop()
			if leaseLost(ctx) {
				// Someone else owns the stream now: drop in-flight work
				// without publishing or checkpointing it; the new owner
				// reads it again from the last checkpoint.
				p.cfg.Logger.Warn("lease lost; dropping in-flight work", "inflight", l.nflight, "waiting", l.batcher.Len())
				hardStop()
			}
		case <-drainTimer:
			p.cfg.Logger.Warn("drain timed out; abandoning in-flight batches (they will be read again)", "inflight", l.nflight, "waiting", l.batcher.Len())
			hardStop()
			drainTimer = nil
		}
		l.seal(time.Now(), stopping)
		l.pump()
		if stopping && mappedDone && l.nflight == 0 && (l.batcher.Len() == 0 && len(l.qorder) == 0 || pubCtx.Err() != nil) {
			break
		}
	}
	// The final checkpoint uses a fresh context: the caller's is cancelled
	// by now, and the position must still be saved.
	if !leaseLost(ctx) {
		l.saveShadow()
	}
	if wm := l.tracker.Watermark(); wm != "" && !leaseLost(ctx) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if err := p.src.Checkpoint(cctx, wm); err != nil {
			p.cfg.Logger.Error("final checkpoint failed", "position", wm, "err", err)
		}
		cancel()
	}
	return srcErr
}

// Channel buffers between the stages: slack on top of MaxPending.
const (
	eventBuffer  = 256
	mappedBuffer = 128
)

// mapped is an event with the wire changes it maps to.
type mapped struct {
	ev   changefeed.Event
	outs []publish.Output
}

// mapStage maps events in source order on its own goroutine. The mapper
// is used only here.
func (p *Processor) mapStage(events <-chan changefeed.Event, out chan<- mapped, quit <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	defer close(out)
	var last publish.MapperStats
	for ev := range events {
		var outs []publish.Output
		if ev.Change != nil {
			outs = p.m.Map(ev.Change, nil)
			if mt := p.cfg.Metrics; mt != nil {
				mt.read.Inc()
				s := p.m.Stats
				mt.refetch.Add(float64(s.Refetch - last.Refetch))
				mt.unroutable.Add(float64(s.Unroutable - last.Unroutable))
				mt.replays.Add(float64(s.Replays - last.Replays))
				last = s
			}
		}
		select {
		case out <- mapped{ev: ev, outs: outs}:
		case <-quit:
			for range events {
				// The source is stopping; let it finish.
			}
			return
		}
	}
}

func (l *loop) handle(m mapped) {
	ev := m.ev
	ticket := l.tracker.Add(ev.Position)
	if len(m.outs) == 0 {
		l.tracker.Ack(ticket)
		l.advance()
		return
	}
	l.refs[ticket] = len(m.outs)
	if ev.Change.Op == changefeed.Truncate {
		// A truncate goes to the whole hub while earlier changes may sit in
		// group windows: publish everything before it, then it alone, so no
		// client sees an older row after the truncate.
		l.barrier()
		defer l.barrier()
	}
	now := time.Now()
	for _, o := range m.outs {
		p := publish.Pending{Out: o, Ticket: ticket}
		if l.batcher.WouldOverflow(p) {
			l.enqueue(o.Audience)
		}
		if l.batcher.Add(p, now) {
			l.enqueue(o.Audience)
		}
	}
}

// barrier publishes everything read so far and waits for it.
func (l *loop) barrier() {
	l.seal(time.Now(), true)
	for {
		l.pump()
		if l.nflight == 0 && len(l.qorder) == 0 || l.pubCtx.Err() != nil && l.nflight == 0 {
			return
		}
		l.complete(<-l.done)
	}
}

// enqueue seals t's window into its queue of batches.
func (l *loop) enqueue(t publish.Audience) {
	items := l.batcher.Take(t)
	if len(items) == 0 {
		return
	}
	if len(l.queued[t]) == 0 {
		l.qorder = append(l.qorder, t)
	}
	l.queued[t] = append(l.queued[t], items)
}

// seal queues every window that is due.
func (l *loop) seal(now time.Time, flush bool) {
	for _, t := range l.batcher.Ready(now, flush) {
		l.enqueue(t)
	}
}

// pump starts queued batches, at most one per target and Parallelism in
// all, oldest target first.
func (l *loop) pump() {
	for i := 0; i < len(l.qorder) && l.nflight < l.cfg.Parallelism; {
		t := l.qorder[i]
		if l.inflight[t] {
			i++
			continue
		}
		items := l.queued[t][0]
		l.queued[t] = l.queued[t][1:]
		if len(l.queued[t]) == 0 {
			delete(l.queued, t)
			l.qorder = append(l.qorder[:i], l.qorder[i+1:]...)
		} else {
			i++
		}
		l.inflight[t] = true
		l.nflight++
		go func() { l.done <- l.deliver(t, items) }()
	}
}

func (l *loop) complete(r result) {
	delete(l.inflight, r.target)
	l.nflight--
	if !r.delivered {
		return
	}
	if mt := l.cfg.Metrics; mt != nil {
		mt.published.Add(float64(len(r.items)))
	}
	for _, it := range r.items {
		if it.Out.Save != nil && l.cfg.ShadowStore != nil {
			l.saves[it.Ticket] = append(l.saves[it.Ticket], *it.Out.Save)
		}
		if n := l.refs[it.Ticket] - 1; n > 0 {
			l.refs[it.Ticket] = n
		} else {
			delete(l.refs, it.Ticket)
			l.tracker.Ack(it.Ticket)
		}
	}
	l.advance()
}

// advance moves the watermark over the acknowledged prefix and hands a new
// one to the source.
func (l *loop) advance() {
	if wm, moved := l.tracker.Advance(); moved {
		l.saveShadow()
		cctx, cancel := context.WithTimeout(context.WithoutCancel(l.ctx), 10*time.Second)
		if err := l.src.Checkpoint(cctx, wm); err != nil {
			l.cfg.Logger.Warn("checkpoint failed; will retry with the next one", "position", wm, "err", err)
		}
		cancel()
	}
	if mt := l.cfg.Metrics; mt != nil {
		mt.pending.Set(float64(l.tracker.Pending()))
	}
}

// deliver publishes one batch for t, in its own goroutine. It retries what
// is retryable, splits what is too large, and turns what is refused for
// good into refetch markers, so one poison change never stalls the stream.
func (l *loop) deliver(t publish.Audience, items []publish.Pending) result {
	ok := l.publishSplit(t, items)
	return result{target: t, items: items, delivered: ok}
}

func (l *loop) publishSplit(t publish.Audience, items []publish.Pending) bool {
	err := l.publishRetry(publish.BuildBatch(l.cfg.Source, t, items))
	switch {
	case err == nil:
		return true
	case l.pubCtx.Err() != nil:
		return false
	case publish.IsTooLarge(err) && len(items) > 1:
		half := len(items) / 2
		return l.publishSplit(t, items[:half]) && l.publishSplit(t, items[half:])
	}
	reason := "publish_failed"
	if publish.IsTooLarge(err) {
		reason = "too_large"
	}
	l.cfg.Logger.Error("target refused a batch; sending refetch markers instead", "target", t.String(), "changes", len(items), "err", err)
	markers := make([]publish.Pending, len(items))
	for i, it := range items {
		c := it.Out.Change
		c = wire.Entry{Op: wire.OpRefetch, Collection: c.Collection, ID: c.ID, V: c.V, TS: c.TS, Reason: reason}
		if it.Out.Change.Op == wire.OpTruncate || it.Out.Change.Op == wire.OpDelete {
			c = it.Out.Change // carry no data: nothing to shrink
		}
		if it.Out.Save != nil && it.Out.Save.Doc != nil {
			// The client never got this version as data: the store must
			// not offer it as a base for patches.
			items[i].Out.Save = &publish.ShadowRecord{Key: it.Out.Save.Key, V: it.Out.Save.V, Audience: t}
		}
		markers[i] = publish.Pending{Out: publish.Output{Audience: t, Change: c, Raw: mustJSON(c)}, Ticket: it.Ticket}
	}
	if mt := l.cfg.Metrics; mt != nil {
		mt.refetch.Add(float64(len(items)))
	}
	if err := l.publishRetry(publish.BuildBatch(l.cfg.Source, t, markers)); err != nil {
		if l.pubCtx.Err() != nil {
			return false
		}
		// Nothing smaller can be sent; the loss is logged and counted, and
		// the stream goes on.
		l.cfg.Logger.Error("target refused refetch markers; changes dropped", "target", t.String(), "changes", len(items), "err", err)
		if mt := l.cfg.Metrics; mt != nil {
			mt.dropped.Add(float64(len(items)))
		}
	}
	return true
}

// saveShadow stores the shadow records of the changes the watermark now
// covers, before the checkpoint moves past them. Only those: a stored
// version makes a restarted worker skip replays at or below it, so every
// output of that change and of every change before it must be published —
// a move sends a delete and an upsert to two targets, and a later version
// of the same document can finish first on a third. A failure is logged
// and costs only efficiency: a later change is then diffed against an
// older stored version, which clients detect by its pv and refetch.
func (l *loop) saveShadow() {
	if l.cfg.ShadowStore == nil || len(l.saves) == 0 {
		return
	}
	next := l.tracker.Next()
	var recs []publish.ShadowRecord
	for tk, rs := range l.saves {
		if tk < next {
			recs = append(recs, rs...)
			delete(l.saves, tk)
		}
	}
	if len(recs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(l.pubCtx, 30*time.Second)
	defer cancel()
	if err := l.cfg.ShadowStore.Save(ctx, recs); err != nil && l.pubCtx.Err() == nil {
		l.cfg.Logger.Warn("shadow store save failed", "records", len(recs), "err", err)
	}
}

func (l *loop) publishRetry(b *publish.Batch) error {
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		start := time.Now()
		err := l.pub.Publish(l.pubCtx, b)
		if mt := l.cfg.Metrics; mt != nil {
			mt.latency.Observe(time.Since(start).Seconds())
			if err == nil {
				mt.batches.Inc()
			}
		}
		if err == nil {
			return nil
		}
		if l.pubCtx.Err() != nil {
			return l.pubCtx.Err()
		}
		after, retry := publish.RetryAfter(err)
		if !retry {
			return err
		}
		wait := max(after, backoff/2+rand.N(backoff/2+1))
		if attempt == 0 || attempt%20 == 0 {
			l.cfg.Logger.Warn("publish failed; retrying", "target", b.Audience.String(), "attempt", attempt+1, "wait", wait, "err", err)
		}
		if mt := l.cfg.Metrics; mt != nil {
			mt.retries.Inc()
		}
		select {
		case <-time.After(wait):
		case <-l.pubCtx.Done():
			return l.pubCtx.Err()
		}
		backoff = min(backoff*2, l.cfg.MaxBackoff)
	}
}

func mustJSON(c wire.Entry) []byte {
	b, err := json.Marshal(c)
	if err != nil {
		// A marker holds only strings and raw JSON that was valid before.
		panic(err)
	}
	return b
}

// leaseLost reports whether ctx ended because the stream's lease was lost
// (a cause with a LeaseLost() bool method, as lease.LostError has).
func leaseLost(ctx context.Context) bool {
	var lost interface{ LeaseLost() bool }
	return errors.As(context.Cause(ctx), &lost) && lost.LeaseLost()
}
