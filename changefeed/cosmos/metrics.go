package cosmos

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the Cosmos source's Prometheus metrics. A nil *Metrics
// records nothing.
type Metrics struct {
	lag    *prometheus.GaugeVec
	owned  *prometheus.GaugeVec
	total  prometheus.Gauge
	reads  *prometheus.CounterVec
	ru     prometheus.Counter
	splits prometheus.Counter
	index  *prometheus.GaugeVec
}

// NewMetrics registers the Cosmos metrics with reg (nil: none are kept).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		return nil
	}
	m := &Metrics{
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "changecast", Subsystem: "cosmos", Name: "lease_lag",
			Help: "Estimated changes (LSNs) of a held lease's range not yet checkpointed: session-token LSN minus the checkpoint's LSN."},
			[]string{"lease"}),
		owned: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "changecast", Subsystem: "cosmos", Name: "lease_owned",
			Help: "1 for each lease this instance holds and reads."}, []string{"lease"}),
		total: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "changecast", Subsystem: "cosmos", Name: "leases_owned",
			Help: "Leases this instance holds."}),
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "changecast", Subsystem: "cosmos", Name: "feed_reads_total",
			Help: "Change feed reads by result: page (changes), empty (304), error (after the SDK's retries)."}, []string{"result"}),
		ru: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "changecast", Subsystem: "cosmos", Name: "request_units_total",
			Help: "Request units charged for change feed reads."}),
		splits: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "changecast", Subsystem: "cosmos", Name: "splits_total",
			Help: "Feed range splits handled (a lease replaced by its children)."}),
		index: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "changecast", Subsystem: "cosmos", Name: "routing_index_documents",
			Help: "Documents in a held lease's routing index (source.cosmos.routingIndex): its memory is about 100-200 bytes each."}, []string{"lease"}),
	}
	reg.MustRegister(m.lag, m.owned, m.total, m.reads, m.ru, m.splits, m.index)
	return m
}

func (m *Metrics) setLag(s *Source) {
	if m == nil {
		return
	}
	if lag, ok := s.Lag(); ok {
		m.lag.WithLabelValues(s.l.Token).Set(float64(lag))
	}
}

func (m *Metrics) hold(token string) {
	if m == nil {
		return
	}
	m.owned.WithLabelValues(token).Set(1)
	m.total.Inc()
}

func (m *Metrics) drop(token string) {
	if m == nil {
		return
	}
	m.owned.DeleteLabelValues(token)
	m.lag.DeleteLabelValues(token)
	m.index.DeleteLabelValues(token)
	m.total.Dec()
}

func (m *Metrics) read(result string) {
	if m != nil {
		m.reads.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) charge(ru float32) {
	if m != nil && ru > 0 {
		m.ru.Add(float64(ru))
	}
}

func (m *Metrics) split() {
	if m != nil {
		m.splits.Inc()
	}
}

func (m *Metrics) indexed(token string, n int) {
	if m != nil {
		m.index.WithLabelValues(token).Set(float64(n))
	}
}
