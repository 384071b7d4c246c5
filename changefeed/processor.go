package changefeed

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/changecast/changecast/lease"
)

// Delivery is one change handed to a Consumer, with the sequence number the
// consumer acknowledges it by.
type Delivery struct {
	Seq    uint64
	Change *Change
}

// Consumer is what a Processor feeds a stream's changes to; the publish
// pipeline implements it.
type Consumer interface {
	// Consume receives changes on in, in source order, until in is closed,
	// and calls ack with the sequence numbers of the ones it has finished
	// (published), in any order, grouped as it likes, from any goroutine,
	// but never after Consume returned. Acknowledge only what is done:
	// never on receipt. Consume returns once in is closed and everything
	// it received was acknowledged (a soft stop), or soon after ctx ends
	// (a hard stop: whatever is not acknowledged is abandoned, and read
	// again from the last checkpoint by whoever runs the stream next).
	Consume(ctx context.Context, in <-chan Delivery, ack func(seq ...uint64)) error
}

// Committer is a Consumer that keeps state per change which must be made
// durable before the source's checkpoint passes the change (the publish
// pipeline's shadow store). The Processor calls Commit on its own goroutine
// before every checkpoint with the first sequence number not yet covered:
// every change below it was acknowledged.
type Committer interface {
	Commit(ctx context.Context, below uint64)
}

// ProcessorConfig tunes a Processor. Zero values take the documented
// defaults.
type ProcessorConfig struct {
	// MaxPending bounds the changes read but not yet acknowledged; reading
	// pauses above it, so memory stays bounded when the target is slow or
	// down. Default 20000.
	MaxPending int
	// DrainTimeout is how long a soft stop waits for the consumer to finish
	// what it was given before it is stopped hard (its unacknowledged
	// changes are read again after a restart). Default 30 s.
	DrainTimeout time.Duration
	Logger       *slog.Logger
	Metrics      *Metrics // nil: none
}

// Defaults of ProcessorConfig.
const (
	DefaultMaxPending   = 20000
	DefaultDrainTimeout = 30 * time.Second
)

func (c *ProcessorConfig) defaults() {
	if c.MaxPending <= 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Processor runs one stream: it reads a Source, hands its changes to a
// Consumer, and checkpoints the source with the Tracker's watermark as the
// consumer acknowledges them (at-least-once).
type Processor struct {
	cfg ProcessorConfig
	src Source
	con Consumer
}

// NewProcessor returns a processor; Run starts it.
func NewProcessor(cfg ProcessorConfig, src Source, con Consumer) *Processor {
	cfg.defaults()
	return &Processor{cfg: cfg, src: src, con: con}
}

// Channel buffers: slack on top of MaxPending.
const (
	eventBuffer    = 256
	deliveryBuffer = 256
)

// acks collects acknowledgements from any goroutine without ever blocking
// the consumer; the Processor takes them when notified.
type acks struct {
	mu     sync.Mutex
	seqs   []uint64
	notify chan struct{}
}

func (a *acks) ack(seqs ...uint64) {
	a.mu.Lock()
	a.seqs = append(a.seqs, seqs...)
	a.mu.Unlock()
	select {
	case a.notify <- struct{}{}:
	default:
	}
}

func (a *acks) take(buf []uint64) []uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	buf = append(buf[:0], a.seqs...)
	a.seqs = a.seqs[:0]
	return buf
}

// Run processes until ctx ends or the source fails. Cancelling ctx is a
// soft stop: reading stops, the consumer finishes what it was given (for
// at most DrainTimeout), the source is checkpointed, and Run returns nil.
// A ctx cancelled because the stream's lease was lost (a cause with a
// LeaseLost() bool method, as lease.LostError has) stops at once: nothing
// more is published or checkpointed, since another instance owns the
// stream now. A source that fails is drained the same way, and its error
// returned.
func (p *Processor) Run(ctx context.Context) error {
	log := p.cfg.Logger
	srcCtx, stopSrc := context.WithCancel(ctx)
	defer stopSrc()
	events := make(chan Event, eventBuffer)
	srcDone := make(chan error, 1)
	go func() {
		err := p.src.Run(srcCtx, events)
		close(events) // Run has returned: nothing sends on events any more
		srcDone <- err
	}()

	// The consumer outlives the soft stop so it can finish what it has;
	// hardStop ends it.
	conCtx, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hardStop()
	in := make(chan Delivery, deliveryBuffer)
	box := &acks{notify: make(chan struct{}, 1)}
	conDone := make(chan error, 1)
	go func() { conDone <- p.con.Consume(conCtx, in, box.ack) }()

	var (
		tracker    Tracker
		pending    Delivery // read, not yet handed over (when hasPending)
		hasPending bool
		srcErr     error
		conErr     error
		eventsDone bool
		inClosed   bool
		conEnded   bool
		stopping   bool
		drain      <-chan time.Time
		seqs       []uint64
	)
	mt := p.cfg.Metrics
	advance := func() {
		if wm, moved := tracker.Advance(); moved {
			p.checkpoint(ctx, wm, tracker.Next())
		}
		if mt != nil {
			mt.pending.Set(float64(tracker.Pending()))
		}
	}
	stop := func() {
		if !stopping {
			stopping = true
			stopSrc()
			drain = time.After(p.cfg.DrainTimeout)
		}
	}
	ctxDone := ctx.Done()
	for !conEnded || !eventsDone {
		var (
			read    <-chan Event
			handOut chan<- Delivery
			next    Delivery
		)
		hard := conCtx.Err() != nil
		switch {
		case hasPending && !hard:
			handOut, next = in, pending
		case !eventsDone && (hard || tracker.Pending() < p.cfg.MaxPending):
			// Under MaxPending (backpressure); once the consumer is
			// stopped hard, read only to discard, so the source can end.
			read = events
		}
		if eventsDone && !inClosed && (!hasPending || hard) {
			close(in)
			inClosed = true
		}
		select {
		case ev, ok := <-read:
			switch {
			case !ok:
				eventsDone = true
				if err := <-srcDone; err != nil && ctx.Err() == nil {
					srcErr = err
					var split *lease.SplitError
					switch {
					case errors.As(err, &split):
						// A split is routine: the children take over.
						log.Info("feed range split; draining and stopping", "children", len(split.Children))
					case IsFatal(err):
						// The process stops: its caller logs the one line.
						log.Info("source stopped for good; draining", "err", err)
					default:
						// Returned to the lease manager, which logs the
						// one ERROR line as it releases the lease.
						log.Debug("source failed; draining and stopping", "err", err)
					}
				}
				stop()
			case hard:
			case ev.Change == nil:
				// A position alone (a commit, a heartbeat): nothing to
				// publish, so it is done as soon as everything before it is.
				tracker.Ack(tracker.Add(ev.Position))
				advance()
			default:
				if mt != nil {
					mt.read.Inc()
				}
				d := Delivery{Seq: tracker.Add(ev.Position), Change: ev.Change}
				// Handed over at once when the consumer has room: one
				// cheap send instead of another turn of the select
				// (profiling: the two selects per change were 5% of a
				// PostgreSQL stream's CPU).
				select {
				case in <- d:
				default:
					pending, hasPending = d, true
				}
			}
		case handOut <- next:
			pending, hasPending = Delivery{}, false
		case <-box.notify:
			seqs = box.take(seqs)
			for _, s := range seqs {
				tracker.Ack(s)
			}
			if !hard {
				advance()
			}
		case err := <-conDone:
			conEnded = true
			if err != nil && conCtx.Err() == nil {
				conErr = err
				// Returned, and logged once by the lease manager.
				log.Debug("consumer failed; stopping", "err", err)
			}
			// A consumer that ends on its own (it failed) cannot take
			// more: stop everything.
			hardStop()
			stop()
		case <-ctxDone:
			ctxDone = nil
			stop()
			if leaseLost(ctx) {
				// Someone else owns the stream now: drop in-flight work
				// without publishing or checkpointing it; the new owner
				// reads it again from the last checkpoint.
				// The lease manager logs the loss, once, at the level
				// its cause deserves (a reset or a takeover is INFO).
				log.Debug("lease lost; dropping in-flight work", "pending", tracker.Pending())
				hardStop()
			}
		case <-drain:
			drain = nil
			log.Warn("drain timed out; abandoning in-flight batches (they will be read again)", "pending", tracker.Pending())
			hardStop()
		}
	}
	// The consumer has returned: take its last acknowledgements, then save
	// the position with a fresh context (the caller's is cancelled by now).
	if !leaseLost(ctx) {
		for _, s := range box.take(seqs) {
			tracker.Ack(s)
		}
		tracker.Advance()
		if wm := tracker.Watermark(); wm != "" {
			p.checkpoint(ctx, wm, tracker.Next())
		}
	}
	return errors.Join(srcErr, conErr)
}

// checkpoint stores wm in the source, after the consumer made durable what
// it keeps for the changes below next.
func (p *Processor) checkpoint(ctx context.Context, wm Position, next uint64) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if c, ok := p.con.(Committer); ok {
		c.Commit(cctx, next)
	}
	if err := p.src.Checkpoint(cctx, wm); err != nil {
		p.cfg.Logger.Warn("checkpoint failed; will retry with the next one", "position", wm, "err", err)
	}
}

// leaseLost reports whether ctx ended because the stream's lease was lost
// (a cause with a LeaseLost() bool method, as lease.LostError has).
func leaseLost(ctx context.Context) bool {
	var lost interface{ LeaseLost() bool }
	return errors.As(context.Cause(ctx), &lost) && lost.LeaseLost()
}

// Metrics are the processor's Prometheus metrics.
type Metrics struct {
	read    prometheus.Counter
	pending prometheus.Gauge
}

// NewMetrics registers the processor metrics with reg. Every stream of a
// process shares one.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		read: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "changecast", Name: "changes_read_total",
			Help: "Changes read from the source."}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "changecast", Name: "pending_events",
			Help: "Events read but not yet checkpointed."}),
	}
	reg.MustRegister(m.read, m.pending)
	return m
}
