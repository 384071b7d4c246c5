package postgres

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the PostgreSQL source's own gauges and counters; nil fields
// of a zero Metrics are skipped, so tests need none.
type Metrics struct {
	identityFull  *prometheus.GaugeVec
	slotRecreated prometheus.Counter
	retainedWAL   prometheus.Gauge
	safeWAL       prometheus.Gauge
}

// NewMetrics registers the source's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		identityFull: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "changecast", Name: "postgres_replica_identity_full",
			Help: "1 when a streamed table has REPLICA IDENTITY FULL; 0 when it does not (source.postgres.replicaIdentity: keep), and deletes and moves of rows changecast has not seen go to the whole hub."}, []string{"table"}),
		slotRecreated: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "changecast", Name: "slot_recreated_total",
			Help: "Replication slots found invalidated or dropped and created anew; each starts a new epoch for every stream (clients reload)."}),
		retainedWAL: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "changecast", Name: "slot_retained_wal_bytes",
			Help: "WAL the replication slot holds back: pg_current_wal_lsn() - restart_lsn."}),
		safeWAL: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "changecast", Name: "slot_safe_wal_bytes",
			Help: "WAL that can still be written before the slot is invalidated (pg_replication_slots.safe_wal_size); -1 when max_slot_wal_keep_size is unlimited."}),
	}
	if reg != nil {
		reg.MustRegister(m.identityFull, m.slotRecreated, m.retainedWAL, m.safeWAL)
	}
	return m
}

func (m *Metrics) setIdentity(table string, full bool) {
	if m.identityFull != nil {
		v := 0.0
		if full {
			v = 1
		}
		m.identityFull.WithLabelValues(table).Set(v)
	}
}

func (m *Metrics) recreated() {
	if m.slotRecreated != nil {
		m.slotRecreated.Inc()
	}
}

func (m *Metrics) setWAL(retained, safe float64) {
	if m.retainedWAL != nil {
		m.retainedWAL.Set(retained)
		m.safeWAL.Set(safe)
	}
}
