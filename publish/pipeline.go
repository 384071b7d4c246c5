package publish

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/schema/wire"
)

// PipelineConfig tunes a Pipeline. Zero values take the documented
// defaults.
type PipelineConfig struct {
	// Source labels envelopes, e.g. "postgres:app/changecast".
	Source string
	// Stream names this pipeline's stream (the lease's token) in the
	// stream lag metric; empty: Source.
	Stream string
	Batch  BatchLimits
	// Parallelism bounds batches in flight across audiences (one per
	// audience, so each keeps its order). Default 8.
	Parallelism int
	// MaxBackoff caps the wait between publish retries. Default 5 s.
	MaxBackoff time.Duration
	Logger     *slog.Logger
	Metrics    *Metrics // nil: none
	// ShadowStore, when set, receives the shadow records of published
	// outputs before the source's checkpoint passes their changes (see
	// ShadowStore). Give the same store to the mapper.
	ShadowStore ShadowStore
}

// Defaults of PipelineConfig and BatchLimits.
const (
	DefaultParallelism = 8
	DefaultMaxChanges  = 500
	DefaultMaxBytes    = 512 * 1024
	// MaxBatchBytes is Azure SignalR's REST body limit, kept for every
	// publisher so that what works on the built-in hub works on Azure.
	MaxBatchBytes = 1_000_000
)

func (c *PipelineConfig) defaults() {
	if c.Parallelism <= 0 {
		c.Parallelism = DefaultParallelism
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.Batch.MaxChanges <= 0 {
		c.Batch.MaxChanges = DefaultMaxChanges
	}
	if c.Batch.MaxBytes <= 0 {
		c.Batch.MaxBytes = DefaultMaxBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Pipeline is the consumer of one stream (changefeed.Consumer): it maps
// each change with a Mapper, groups the outputs per audience with a
// Batcher, publishes batches through a Publisher (one in flight per
// audience, so each audience keeps its order; several audiences in
// parallel) and acknowledges a change once every output of it was
// accepted. Batching is adaptive: a change for an audience with nothing in
// flight is published at once; what arrives while a batch is in flight
// goes out in the next one as soon as it completes, so batches grow with
// the load and never wait on a fixed window. Run it with changefeed.NewProcessor(cfg, source, pipeline).
//
// Failure rules, so one bad document never stalls a stream: retryable
// errors are retried with backoff (honouring the target's Retry-After); a
// batch over the size limit is split; a batch refused for good is sent
// again as refetch markers.
type Pipeline struct {
	cfg PipelineConfig
	m   *Mapper
	pub Publisher

	mu    sync.Mutex
	saves map[uint64][]ShadowRecord // records of published outputs, by change
	// saveMu orders ShadowStore saves: records are taken and saved under
	// it, so a reset's forgetting records are saved after every record of
	// an earlier change.
	saveMu sync.Mutex
}

// StreamRenewer is a publisher that keeps a history per stream (package
// history). After a changefeed.Reset the pipeline renews every stream, so
// clients that were away get a resync from the changes endpoint, and
// publishes an empty envelope to each, so clients that are connected see
// the new epoch and reload.
type StreamRenewer interface {
	// RenewStreams starts a new epoch for every stream the publisher
	// keeps and returns their audiences (Method left empty).
	RenewStreams(ctx context.Context) ([]Audience, error)
}

// NewPipeline returns the pipeline of one stream. The mapper is used by the
// pipeline alone; the publisher may be shared.
func NewPipeline(cfg PipelineConfig, m *Mapper, pub Publisher) *Pipeline {
	cfg.defaults()
	return &Pipeline{cfg: cfg, m: m, pub: pub, saves: map[uint64][]ShadowRecord{}}
}

type result struct {
	audience  Audience
	items     []Pending
	delivered bool
}

// mapped is a change with the outputs it maps to.
type mapped struct {
	seq    uint64
	op     changefeed.Op
	outs   []Output
	commit time.Time // the change's commit at the source; zero unknown
	// reset, for a changefeed.Reset: its version, and closed by the loop
	// once everything before it was published, when the map stage forgets
	// its shadow and maps on.
	reset   string
	resumed chan struct{}
}

// loop is the state of one Consume; only its goroutine touches it.
type loop struct {
	*Pipeline
	ack     func(...uint64)
	batcher *Batcher
	refs    map[uint64]int       // outputs not yet published, by change
	commits map[uint64]time.Time // commit times of the changes in refs, for the lag metrics
	nflight int
	jobs    chan job // to the publishing workers; never more than they are
	done    chan result
	ctx     context.Context
}

// job is one batch for a publishing worker.
type job struct {
	a     Audience
	items []Pending
}

const mappedBuffer = 128

// Consume implements changefeed.Consumer.
func (p *Pipeline) Consume(ctx context.Context, in <-chan changefeed.Delivery, ack func(...uint64)) error {
	l := &loop{
		Pipeline: p,
		ack:      ack,
		batcher:  NewBatcher(p.cfg.Batch),
		refs:     map[uint64]int{},
		commits:  map[uint64]time.Time{},
		jobs:     make(chan job, p.cfg.Parallelism),
		done:     make(chan result, p.cfg.Parallelism),
		ctx:      ctx,
	}
	// Batches are published by long-lived workers, not a goroutine each:
	// a new goroutine's stack grew again for every batch (profiling: stack
	// copies were 6% of the pipeline's CPU).
	var workers sync.WaitGroup
	for range p.cfg.Parallelism {
		workers.Go(func() {
			for j := range l.jobs {
				l.done <- l.deliver(j.a, j.items)
			}
		})
	}
	// Every return below has waited for the batches in flight first.
	defer func() {
		close(l.jobs)
		workers.Wait()
	}()
	if mt := p.cfg.Metrics; mt != nil {
		defer mt.streamLag.DeleteLabelValues(p.stream())
	}
	// Mapping (routing and diffing, the heaviest step) runs on its own
	// goroutine, so it and batching use separate cores.
	mappedCh := make(chan []mapped, mappedBuffer)
	quit := make(chan struct{})
	stageDone := make(chan struct{})
	go p.mapStage(in, mappedCh, quit, stageDone)
	defer func() {
		close(quit)
		<-stageDone
	}()

	var (
		inDone  bool
		timer   *time.Timer // armed only while a window lingers (MaxDelay > 0)
		timerAt time.Time
		timerC  <-chan time.Time
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		var from <-chan []mapped
		if !inDone && ctx.Err() == nil {
			from = mappedCh
		}
		if dl, ok := l.batcher.NextDeadline(); ok && !inDone {
			if !dl.Equal(timerAt) || timerC == nil {
				if timer == nil {
					timer = time.NewTimer(time.Until(dl))
				} else {
					timer.Reset(time.Until(dl))
				}
				timerAt, timerC = dl, timer.C
			}
		} else {
			timerC = nil
		}
		select {
		case ms, ok := <-from:
			if !ok {
				inDone = true
			} else {
				now := time.Now()
				for _, m := range ms {
					l.handle(m, now)
				}
			}
		case r := <-l.done:
			l.complete(r)
		case <-timerC:
			timerC = nil
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			// Hard stop: the publishers see ctx and give up; wait for
			// them, acknowledge nothing more.
			for l.nflight > 0 {
				<-l.done
				l.nflight--
			}
			return nil
		}
		l.pump(time.Now(), inDone)
		if inDone && l.nflight == 0 && l.batcher.Len() == 0 {
			return nil
		}
	}
}

// mapStage maps changes in source order on its own goroutine. The mapper is
// used only here. It hands the batching loop every change mapped so far in
// one slice, so a busy stream costs one channel operation (and at most one
// wake-up of the loop) per burst rather than per change, while a quiet one
// still hands each change over at once.
func (p *Pipeline) mapStage(in <-chan changefeed.Delivery, out chan<- []mapped, quit <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	defer close(out)
	var last MapperStats
	const maxRun = 256
	var run []mapped
	// Outputs are mapped into slabs, one allocation per few hundred changes
	// rather than one per change; the batcher points into them.
	var slab []Output
	mapOne := func(d changefeed.Delivery) {
		if d.Change.Op == changefeed.Reset {
			run = append(run, mapped{seq: d.Seq, op: changefeed.Reset, reset: d.Change.Version, resumed: make(chan struct{})})
			return
		}
		if cap(slab)-len(slab) < 8 {
			slab = make([]Output, 0, 256)
		}
		start := len(slab)
		slab = p.m.Map(d.Change, slab)
		run = append(run, mapped{seq: d.Seq, op: d.Change.Op, outs: slab[start:len(slab):len(slab)], commit: d.Change.CommitTime})
	}
	for {
		d, ok := <-in
		if !ok {
			return
		}
		mapOne(d)
		// Take what is already waiting, without blocking.
	more:
		for len(run) < maxRun && run[len(run)-1].resumed == nil {
			select {
			case d, ok := <-in:
				if !ok {
					break more
				}
				mapOne(d)
			default:
				break more
			}
		}
		if mt := p.cfg.Metrics; mt != nil {
			s := p.m.Stats
			mt.refetch.Add(float64(s.Refetch - last.Refetch))
			mt.unroutable.Add(float64(s.Unroutable - last.Unroutable))
			mt.fallbacks.Add(float64(s.Fallbacks - last.Fallbacks))
			mt.replays.Add(float64(s.Replays - last.Replays))
			last = s
		}
		last := run[len(run)-1]
		select {
		case out <- run:
			run = make([]mapped, 0, len(run))
		case <-quit:
			for range in {
				// The processor is stopping; let it close in.
			}
			return
		}
		if last.resumed != nil {
			// Nothing after a reset is mapped against the shadow of before:
			// wait until the loop has published what came before it.
			select {
			case <-last.resumed:
				p.m.Forget(last.reset)
			case <-quit:
				for range in {
				}
				return
			}
		}
	}
}

func (l *loop) handle(m mapped, now time.Time) {
	if m.op == changefeed.Reset {
		l.reset(m)
		return
	}
	if len(m.outs) == 0 {
		l.ack(m.seq)
		return
	}
	l.refs[m.seq] = len(m.outs)
	if !m.commit.IsZero() {
		l.commits[m.seq] = m.commit
	}
	if m.op == changefeed.Truncate {
		// A truncate goes to the whole hub while earlier changes may sit in
		// group windows: publish everything before it, then it alone, so no
		// client sees an older row after the truncate.
		l.barrier()
		defer l.barrier()
	}
	for i := range m.outs {
		l.batcher.Add(Pending{Out: &m.outs[i], Ticket: m.seq}, now)
	}
}

// reset handles a changefeed.Reset: everything before it is published and
// its shadow records saved, then the store forgets every document, the map
// stage its shadow, and every stream starts a new epoch with an empty
// envelope that tells connected clients to reload.
func (l *loop) reset(m mapped) {
	l.barrier()
	if l.ctx.Err() != nil {
		return // not acknowledged: the reset comes again after a restart
	}
	if st := l.cfg.ShadowStore; st != nil {
		l.retry("shadow store: forget every document", func() error {
			l.saveMu.Lock()
			defer l.saveMu.Unlock()
			if recs := l.takeSaves(^uint64(0)); len(recs) > 0 {
				if err := st.Save(l.ctx, recs); err != nil {
					return err
				}
			}
			return st.Save(l.ctx, l.m.ForgetRecords(m.reset))
		})
	}
	close(m.resumed)
	methods := map[string]string{}
	auds := l.m.Hubs()
	for _, a := range auds {
		methods[a.Hub] = a.Method
	}
	if r, ok := l.pub.(StreamRenewer); ok {
		var renewed []Audience
		l.retry("history: renew every stream", func() (err error) {
			renewed, err = r.RenewStreams(l.ctx)
			return err
		})
		for _, a := range renewed {
			if mth, ok := methods[a.Hub]; ok && (a.Group != "" || a.User != "") {
				a.Method = mth
				auds = append(auds, a)
			}
		}
		for _, a := range auds {
			b, err := NewBatch(a, wire.Envelope{Source: l.cfg.Source, Hub: a.Hub, Group: a.Group, User: a.User, Changes: []wire.Entry{}})
			if err == nil {
				err = l.publishRetry(b)
			}
			if err != nil && l.ctx.Err() == nil {
				l.cfg.Logger.Error("could not tell a stream's clients to reload after the reset", "audience", a.String(), "err", err)
			}
		}
		l.cfg.Logger.Info("stream reset: every stream starts a new epoch; clients reload from a snapshot", "streams", len(auds))
	}
	l.ack(m.seq)
}

// retry runs f until it succeeds or the pipeline stops, logging failures.
func (l *loop) retry(what string, f func() error) {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil || l.ctx.Err() != nil {
			return
		}
		// Loud at once (the stream waits: nothing after the reset is
		// published until this succeeds, and nothing is lost), then once
		// in 20 attempts, as publishRetry does, not a line per attempt.
		if attempt == 1 || attempt%20 == 0 {
			l.cfg.Logger.Error(what+" failed; the stream waits and retries", "attempt", attempt, "err", err)
		}
		select {
		case <-time.After(backoff):
		case <-l.ctx.Done():
			return
		}
		backoff = min(backoff*2, l.cfg.MaxBackoff)
	}
}

// barrier publishes everything mapped so far and waits for it.
func (l *loop) barrier() {
	for {
		l.pump(time.Now(), true)
		if l.nflight == 0 && (l.batcher.Len() == 0 || l.ctx.Err() != nil) {
			return
		}
		l.complete(<-l.done)
	}
}

// pump starts the batches that are due, at most one per audience (the
// batcher keeps each audience's order) and Parallelism in all; flush makes
// every window due.
func (l *loop) pump(now time.Time, flush bool) {
	if l.ctx.Err() != nil {
		return
	}
	for l.nflight < l.cfg.Parallelism {
		a, items, ok := l.batcher.Next(now, flush)
		if !ok {
			return
		}
		l.nflight++
		l.jobs <- job{a, items}
	}
}

func (l *loop) complete(r result) {
	l.nflight--
	// What accumulated while this batch was in flight is due now (or when
	// its linger ends); pump sends it.
	l.batcher.Done(r.audience, time.Now())
	if !r.delivered {
		return
	}
	if mt := l.cfg.Metrics; mt != nil {
		mt.published.Add(float64(len(r.items)))
	}
	var acks []uint64
	for _, it := range r.items {
		if it.Out.Save != nil && l.cfg.ShadowStore != nil {
			// Recorded before the change is acknowledged, so Commit of a
			// watermark past it finds it.
			l.mu.Lock()
			l.saves[it.Ticket] = append(l.saves[it.Ticket], *it.Out.Save)
			l.mu.Unlock()
		}
		if n := l.refs[it.Ticket] - 1; n > 0 {
			l.refs[it.Ticket] = n
		} else {
			delete(l.refs, it.Ticket)
			acks = append(acks, it.Ticket)
		}
	}
	l.observeLag(acks)
	if len(acks) > 0 {
		l.ack(acks...)
	}
}

// observeLag records the end-to-end lag of the changes in acks, whose
// every output the target accepted just now.
func (l *loop) observeLag(acks []uint64) {
	mt := l.cfg.Metrics
	if mt == nil {
		return
	}
	now := time.Now()
	h := mt.lag.WithLabelValues(l.cfg.Source)
	lag, known := 0.0, false
	for _, seq := range acks {
		if c, ok := l.commits[seq]; ok {
			delete(l.commits, seq)
			lag, known = max(now.Sub(c).Seconds(), 0), true
			h.Observe(lag)
		}
	}
	switch g := mt.streamLag.WithLabelValues(l.stream()); {
	case len(l.refs) == 0:
		g.Set(0)
	case known:
		g.Set(lag)
	}
}

func (p *Pipeline) stream() string {
	if p.cfg.Stream != "" {
		return p.cfg.Stream
	}
	return p.cfg.Source
}

// deliver publishes one batch for a, in its own goroutine.
func (l *loop) deliver(a Audience, items []Pending) result {
	return result{audience: a, items: items, delivered: l.publishSplit(a, items)}
}

// publishSplit retries what is retryable, splits what is too large, and
// turns what is refused for good into refetch markers, so one poison change
// never stalls the stream.
func (l *loop) publishSplit(a Audience, items []Pending) bool {
	err := l.publishRetry(BuildBatch(l.cfg.Source, a, items))
	switch {
	case err == nil:
		return true
	case l.ctx.Err() != nil:
		return false
	case IsTooLarge(err) && len(items) > 1:
		half := len(items) / 2
		return l.publishSplit(a, items[:half]) && l.publishSplit(a, items[half:])
	}
	reason := "publish_failed"
	if IsTooLarge(err) {
		reason = "too_large"
	}
	l.cfg.Logger.Error("target refused a batch; sending refetch markers instead", "audience", a.String(), "changes", len(items), "err", err)
	markers := make([]Pending, len(items))
	for i, it := range items {
		c := it.Out.Change
		if c.Op != wire.OpTruncate && c.Op != wire.OpDelete { // those carry no data: nothing to shrink
			c = wire.Entry{Op: wire.OpRefetch, Collection: c.Collection, ID: c.ID, V: c.V, TS: c.TS, Reason: reason}
		}
		if it.Out.Save != nil && it.Out.Save.Doc != nil {
			// The client never got this version as data: the store must
			// not offer it as a base for patches.
			items[i].Out.Save = &ShadowRecord{Key: it.Out.Save.Key, V: it.Out.Save.V, Audience: a}
		}
		markers[i] = Pending{Out: &Output{Audience: a, Change: c, Raw: c.AppendJSON(nil)}, Ticket: it.Ticket}
	}
	if mt := l.cfg.Metrics; mt != nil {
		mt.refetch.Add(float64(len(items)))
	}
	if err := l.publishRetry(BuildBatch(l.cfg.Source, a, markers)); err != nil {
		if l.ctx.Err() != nil {
			return false
		}
		// Nothing smaller can be sent; the loss is logged and counted, and
		// the stream goes on.
		l.cfg.Logger.Error("target refused refetch markers; changes dropped", "audience", a.String(), "changes", len(items), "err", err)
		if mt := l.cfg.Metrics; mt != nil {
			mt.dropped.Add(float64(len(items)))
		}
	}
	return true
}

func (l *loop) publishRetry(b *Batch) error {
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		start := time.Now()
		err := l.pub.Publish(l.ctx, b)
		if mt := l.cfg.Metrics; mt != nil {
			mt.latency.Observe(time.Since(start).Seconds())
			if err == nil {
				mt.batches.Inc()
			}
		}
		if err == nil {
			return nil
		}
		if l.ctx.Err() != nil {
			return l.ctx.Err()
		}
		after, retry := RetryAfter(err)
		if !retry {
			return err
		}
		wait := max(after, backoff/2+rand.N(backoff/2+1))
		if attempt == 0 || attempt%20 == 0 {
			l.cfg.Logger.Warn("publish failed; retrying", "audience", b.Audience.String(), "attempt", attempt+1, "wait", wait.String(), "err", err)
		}
		if mt := l.cfg.Metrics; mt != nil {
			mt.retries.Inc()
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-l.ctx.Done():
			t.Stop()
			return l.ctx.Err()
		}
		backoff = min(backoff*2, l.cfg.MaxBackoff)
	}
}

// Commit implements changefeed.Committer: it stores the shadow records of
// the changes below seq, before the checkpoint moves past them. Only those:
// a stored version makes a restarted worker skip replays at or below it,
// so every output of that change and of every change before it must be
// published — a move sends a delete and an upsert to two audiences, and a
// later version of the same document can finish first on a third. A
// failure is logged and costs only efficiency: a later change is then
// diffed against an older stored version, which clients detect by its pv
// and refetch.
func (p *Pipeline) Commit(ctx context.Context, below uint64) {
	if p.cfg.ShadowStore == nil {
		return
	}
	p.saveMu.Lock()
	defer p.saveMu.Unlock()
	recs := p.takeSaves(below)
	if len(recs) == 0 {
		return
	}
	if err := p.cfg.ShadowStore.Save(ctx, recs); err != nil && ctx.Err() == nil {
		p.cfg.Logger.Warn("shadow store save failed", "records", len(recs), "err", err)
	}
}

// takeSaves removes and returns the records of the changes below seq.
func (p *Pipeline) takeSaves(below uint64) []ShadowRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	var recs []ShadowRecord
	for seq, rs := range p.saves {
		if seq < below {
			recs = append(recs, rs...)
			delete(p.saves, seq)
		}
	}
	return recs
}
