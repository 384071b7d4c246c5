package worker

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/changefeed/cosmos"
	"github.com/changecast/changecast/changefeed/postgres"
	"github.com/changecast/changecast/internal/connect"
	"github.com/changecast/changecast/lease"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/schema/config"
)

// source is the source side of a worker.
type source struct {
	runner *changefeed.Runner
	label  string                 // names the source in envelopes
	snap   changefeed.Snapshotter // reads snapshots beside the stream
	store  lease.Store            // the leases (the console reads them)
	close  func()                 // releases the connections it opened
}

// newSource assembles the source side of cfg: its partitions under the
// lease store, each lease's pipeline publishing through pub.
func newSource(ctx context.Context, cfg *config.Config, mappings []publish.Mapping, pub publish.Publisher,
	reg prometheus.Registerer, log *slog.Logger) (src source, err error) {
	var closers []func()
	src.close = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	defer func() {
		if err != nil {
			src.close()
		}
	}()
	var label string
	var (
		parts     changefeed.Partitions
		store     lease.Store
		idleReady bool
	)
	switch {
	case cfg.Source.Postgres != nil:
		pg := cfg.Source.Postgres
		pc, err := PostgresConfig(pg, cfg.Mappings)
		if err != nil {
			return src, fatal(err)
		}
		pc.Logger = log.With("source", "postgres")
		pc.ErrorAfter = cfg.Source.ErrorAfter.D()
		pc.Metrics = postgres.NewMetrics(reg)
		label = "postgres:" + pgDatabase(pg.URL) + "/" + pg.Slot
		slot := &postgres.Slot{Config: pc, Processor: cfg.Lease.Processor}
		parts, src.snap = slot, slot
		closers = append(closers, slot.Close)
		s, closeStore, err := connect.LeaseStore(ctx, cfg, nil)
		if err != nil {
			return src, err
		}
		store, closers = s, append(closers, closeStore)
		// A standby that forwards snapshots to the streaming worker
		// (hub.peers) serves clients, so it is ready too.
		idleReady = len(cfg.Hub.Peers) > 0
	case cfg.Source.Cosmos != nil:
		cs := cfg.Source.Cosmos
		label = "cosmos:" + cs.Database + "/" + cs.Container
		start, err := cosmos.ParseStart(cs.StartFrom)
		if err != nil {
			return src, fatal(fmt.Errorf("source.cosmos.startFrom: %w", err))
		}
		client, err := connect.Cosmos(cs)
		if err != nil {
			return src, fatal(err)
		}
		closers = append(closers, client.Close)
		s, closeStore, err := connect.LeaseStore(ctx, cfg, client)
		if err != nil {
			return src, err
		}
		store, closers = s, append(closers, closeStore)
		routeFields, err := CosmosRouteFields(mappings, cs.Container)
		if err != nil {
			return src, fatal(err)
		}
		warnUnindexed(cs, log)
		cont := &cosmos.Container{Client: client, Database: cs.Database, Container: cs.Container,
			Feed: cosmos.FeedConfig{Start: start, PollInterval: cs.PollInterval.D(), MaxItems: cs.MaxItems, ErrorAfter: cfg.Source.ErrorAfter.D(),
				DeleteField: cs.DeleteField, RoutingIndex: cs.Indexed() && len(routeFields) > 0, RouteFields: routeFields, Logger: log.With("source", "cosmos")},
			Processor: cfg.Lease.Processor, Metrics: cosmos.NewMetrics(reg), Leases: store}
		parts, src.snap = cont, cont
		// An instance holding none of the ranges (more instances than
		// ranges) is healthy.
		idleReady = true
	default:
		return src, fatal(fmt.Errorf("source: set one of postgres or cosmos"))
	}

	shadow, closeShadow, err := connect.ShadowStore(ctx, cfg)
	if err != nil {
		return src, err
	}
	closers = append(closers, closeShadow)
	if shadow == nil && cfg.Source.Cosmos != nil {
		// One pipeline per lease: a split's children, or a range taken
		// over here, learn from the others where documents were sent.
		shadow = publish.NewMemoryShadowStore(cfg.Publish.ShadowSize)
	}
	pm := publish.NewMetrics(reg)
	pipe := PipelineConfig(cfg, label)
	pipe.Logger, pipe.Metrics, pipe.ShadowStore = log, pm, shadow
	mo := MapperOptions(cfg)
	mo.Logger, mo.Store = log, shadow
	src.label, src.store = label, store
	src.runner, err = changefeed.NewRunner(changefeed.RunnerConfig{
		Partitions: parts,
		Store:      store,
		NewConsumer: func(l *lease.Lease) (changefeed.Consumer, error) {
			// One per lease: mappers are single-goroutine, and each keeps
			// its own shadow (publish.shadowSize documents per lease).
			m, err := publish.NewMapper(mappings, mo)
			if err != nil {
				return nil, err
			}
			pc := pipe
			pc.Logger = log.With("lease", l.Token)
			pc.Stream = l.Token
			return publish.NewPipeline(pc, m, pub), nil
		},
		Processor:       changefeed.ProcessorConfig{MaxPending: cfg.Publish.MaxPending, Metrics: changefeed.NewMetrics(reg)},
		Owner:           cfg.Lease.Owner,
		AcquireInterval: cfg.Lease.AcquireInterval.D(),
		RenewInterval:   cfg.Lease.RenewInterval.D(),
		Expiry:          cfg.Lease.Expiry.D(),
		IdleReady:       idleReady,
		Logger:          log.With("part", "lease"),
	})
	return src, err
}

// pgDatabase names the database of a URL for the envelope's source label.
func pgDatabase(url string) string {
	if i := strings.LastIndex(url, "/"); i >= 0 && strings.Contains(url, "://") {
		db := url[i+1:]
		if j := strings.IndexByte(db, '?'); j >= 0 {
			db = db[:j]
		}
		if db != "" {
			return db
		}
	}
	return "postgres"
}
