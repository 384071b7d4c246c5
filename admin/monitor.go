package admin

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/changecast/changecast/lease"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/schema/config"
)

// Monitor keeps, in memory, what the console shows of the running worker
// beyond the streams' positions: the last changes published (no document
// contents), the last warnings and errors logged, and the throughput and
// lag of the last 15 minutes, sampled from the metrics. The worker feeds
// it through Publisher and LogHandler and runs Run; GET /admin/status
// serves it.
type Monitor struct {
	// Hubs, when set (before the status is served), reports the publish
	// target's hubs: the built-in hub's Stats.
	Hubs func() any
	// Leases, when set, is the worker's lease store, which the status
	// reads (with lease.store memory, the only place the leases are).
	Leases lease.Store

	reg   prometheus.Gatherer
	every time.Duration

	mu      sync.Mutex
	changes ring[ChangeRecord]
	errors  ring[LogRecord]
	series  ring[Sample]
	last    Sample // the previous sample, for rates
	lags    map[string]float64
}

// Ring sizes: the last changes and log records kept; 15 minutes of
// samples at SampleEvery.
const (
	keepChanges = 50
	keepErrors  = 50
	SampleEvery = 10 * time.Second
	keepSamples = int(15 * time.Minute / SampleEvery)
)

// ChangeRecord is one change a target accepted.
type ChangeRecord struct {
	Time       time.Time `json:"time"`
	Hub        string    `json:"hub"`
	Group      string    `json:"group,omitempty"`
	User       string    `json:"user,omitempty"`
	Collection string    `json:"collection"`
	ID         string    `json:"id,omitempty"`
	Op         string    `json:"op"`
	Version    string    `json:"v"`
	Committed  string    `json:"committed,omitempty"` // the source's commit time, RFC 3339
}

// LogRecord is one WARN or ERROR record the worker logged.
type LogRecord struct {
	Time    time.Time         `json:"time"`
	Level   string            `json:"level"`
	Message string            `json:"msg"`
	Attrs   map[string]string `json:"attrs,omitempty"`
}

// Sample is the state of the metrics at one time: Published is changes
// per second since the previous sample, Lag the largest stream lag.
type Sample struct {
	Time      time.Time `json:"time"`
	Published float64   `json:"published"`
	Lag       float64   `json:"lag"`
	total     float64
}

// NewMonitor returns a monitor sampling reg.
func NewMonitor(reg prometheus.Gatherer) *Monitor {
	return &Monitor{reg: reg, every: SampleEvery,
		changes: newRing[ChangeRecord](keepChanges), errors: newRing[LogRecord](keepErrors), series: newRing[Sample](keepSamples)}
}

// Publisher records what next accepts.
func (m *Monitor) Publisher(next publish.Publisher) publish.Publisher {
	return publish.PublisherFunc(func(ctx context.Context, b *publish.Batch) error {
		err := next.Publish(ctx, b)
		if err == nil {
			m.recordBatch(b, time.Now())
		}
		return err
	})
}

func (m *Monitor) recordBatch(b *publish.Batch, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range b.Envelope.Changes {
		m.changes.add(ChangeRecord{Time: now, Hub: b.Audience.Hub, Group: b.Audience.Group, User: b.Audience.User,
			Collection: e.Collection, ID: e.ID, Op: e.Op, Version: e.V, Committed: e.TS})
	}
}

// Run samples the metrics every SampleEvery until ctx ends.
func (m *Monitor) Run(ctx context.Context) error {
	t := time.NewTicker(m.every)
	defer t.Stop()
	m.sample(time.Now())
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			m.sample(now)
		}
	}
}

func (m *Monitor) sample(now time.Time) {
	mfs, err := m.reg.Gather()
	if err != nil {
		return
	}
	s := Sample{Time: now}
	lags := map[string]float64{}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "changecast_changes_published_total":
			for _, x := range mf.Metric {
				s.total += x.GetCounter().GetValue()
			}
		case "changecast_stream_lag_seconds":
			for _, x := range mf.Metric {
				s.Lag = max(s.Lag, x.GetGauge().GetValue())
				for _, l := range x.Label {
					if l.GetName() == "stream" {
						lags[l.GetValue()] = x.GetGauge().GetValue()
					}
				}
			}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.last.Time.IsZero() {
		if d := now.Sub(m.last.Time).Seconds(); d > 0 {
			s.Published = max(s.total-m.last.total, 0) / d
		}
	}
	m.last, m.lags = s, lags
	m.series.add(s)
}

// LogHandler wraps next, keeping the WARN and ERROR records it handles.
func (m *Monitor) LogHandler(next slog.Handler) slog.Handler {
	return &logKeeper{next: next, m: m}
}

type logKeeper struct {
	next  slog.Handler
	m     *Monitor
	attrs []slog.Attr // from WithAttrs, prefixed by their group
	group string
}

func (h *logKeeper) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.next.Enabled(ctx, l)
}

func (h *logKeeper) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		rec := LogRecord{Time: r.Time, Level: r.Level.String(), Message: r.Message, Attrs: map[string]string{}}
		for _, a := range h.attrs {
			rec.Attrs[a.Key] = a.Value.String()
		}
		r.Attrs(func(a slog.Attr) bool {
			rec.Attrs[h.group+a.Key] = a.Value.String()
			return true
		})
		h.m.mu.Lock()
		h.m.errors.add(rec)
		h.m.mu.Unlock()
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *logKeeper) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(as)
	c.attrs = append([]slog.Attr(nil), h.attrs...)
	for _, a := range as {
		c.attrs = append(c.attrs, slog.Attr{Key: h.group + a.Key, Value: a.Value})
	}
	return &c
}

func (h *logKeeper) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	c.group = h.group + name + "."
	return &c
}

// Live is what the monitor holds now, newest first.
type Live struct {
	Hubs    any            `json:"hubs,omitempty"`
	Changes []ChangeRecord `json:"changes"`
	Errors  []LogRecord    `json:"errors"`
	Series  []Sample       `json:"series"` // oldest first
	// StreamLag is each stream's lag in seconds at the last sample
	// (changecast_stream_lag_seconds), by lease token.
	StreamLag map[string]float64 `json:"streamLag"`
}

// Live returns a copy of what the monitor holds.
func (m *Monitor) Live() Live {
	var l Live
	if m.Hubs != nil {
		l.Hubs = m.Hubs()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	l.Changes, l.Errors = m.changes.newestFirst(), m.errors.newestFirst()
	l.Series, l.StreamLag = m.series.oldestFirst(), m.lags
	return l
}

// ring keeps the last n values added.
type ring[T any] struct {
	buf  []T
	next int
	full bool
}

func newRing[T any](n int) ring[T] { return ring[T]{buf: make([]T, n)} }

func (r *ring[T]) add(v T) {
	r.buf[r.next] = v
	r.next = (r.next + 1) % len(r.buf)
	r.full = r.full || r.next == 0
}

func (r *ring[T]) oldestFirst() []T {
	if !r.full {
		return append([]T{}, r.buf[:r.next]...)
	}
	return append(append([]T{}, r.buf[r.next:]...), r.buf[:r.next]...)
}

func (r *ring[T]) newestFirst() []T {
	s := r.oldestFirst()
	slices.Reverse(s)
	return s
}

// Status is what the console shows: the streams (as Leases reports them),
// the source kind, and what the monitor holds.
type Status struct {
	Processor string       `json:"processor"`
	Source    string       `json:"source"` // postgres or cosmos
	Time      time.Time    `json:"time"`
	Streams   *LeaseReport `json:"streams,omitempty"`
	// StreamsError says why the streams could not be read.
	StreamsError string `json:"streamsError,omitempty"`
	Live
}

// CurrentStatus reads the streams of cfg's processor and adds what mon
// holds. A failure to read the streams is reported in the status, so the
// console still shows the rest.
func CurrentStatus(ctx context.Context, cfg *config.Config, mon *Monitor, o LeasesOptions) *Status {
	st := &Status{Processor: cfg.Lease.Processor, Source: "cosmos", Time: time.Now().UTC(), Live: mon.Live()}
	if cfg.Source.Postgres != nil {
		st.Source = "postgres"
	}
	if o.Store == nil {
		o.Store = mon.Leases
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rep, err := Leases(ctx, cfg, o)
	if err != nil {
		st.StreamsError = err.Error()
	}
	st.Streams = rep
	return st
}
