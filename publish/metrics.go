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
	reg.MustRegister(m.latency)
	return m
}
