package publish

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the publish pipeline's Prometheus metrics. Every stream of a
// process shares one.
type Metrics struct {
	published  prometheus.Counter
	batches    prometheus.Counter
	retries    prometheus.Counter
	refetch    prometheus.Counter
	unroutable prometheus.Counter
	fallbacks  prometheus.Counter
	replays    prometheus.Counter
	dropped    prometheus.Counter
	latency    prometheus.Histogram
	// lag is commit (PostgreSQL commit time, Cosmos _ts) to the target's
	// acceptance of a change's last output, per source; streamLag is each
	// stream's lag now: that of the change it last published, 0 once
	// nothing is waiting.
	lag       *prometheus.HistogramVec
	streamLag *prometheus.GaugeVec
}

// NewMetrics registers the pipeline metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	c := func(name, help string) prometheus.Counter {
		x := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "changecast", Name: name, Help: help})
		reg.MustRegister(x)
		return x
	}
	m := &Metrics{
		published:  c("changes_published_total", "Wire changes accepted by the publish target."),
		batches:    c("batches_published_total", "Batches accepted by the publish target."),
		retries:    c("publish_retries_total", "Publish attempts that failed and were retried."),
		refetch:    c("refetch_total", "Refetch markers sent instead of data."),
		unroutable: c("unroutable_total", "Changes whose group or user could not be derived (logged, not sent)."),
		fallbacks:  c("route_fallback_total", "Deletes sent to a whole hub because the group or user that held the document was unknown (Cosmos without a routing index entry)."),
		replays:    c("replays_skipped_total", "Replayed changes skipped because a newer version was already sent."),
		dropped:    c("dropped_total", "Changes the target refused even as refetch markers (logged)."),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "changecast", Name: "publish_seconds",
			Help: "Time of one publish call.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
	}
	m.lag = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "changecast", Name: "e2e_lag_seconds",
		Help:    "Time from a change's commit at the source to the publish target accepting it, per source.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 16)}, []string{"source"})
	m.streamLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "changecast", Name: "stream_lag_seconds",
		Help: "Each stream's lag: commit to acceptance of the change it last published; 0 when nothing is waiting."}, []string{"stream"})
	reg.MustRegister(m.latency, m.lag, m.streamLag)
	return m
}
