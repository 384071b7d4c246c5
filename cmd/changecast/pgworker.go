package main

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/changefeed/postgres"
	"github.com/changecast/changecast/changefeed/processor"
	"github.com/changecast/changecast/lease"
	"github.com/changecast/changecast/lease/pgstore"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/schema/config"
)

// pgRunner runs the PostgreSQL source: directly with the single-node
// memory store, or, with lease.store postgres, as the holder of the slot's
// one lease, so that a standby instance takes over within the expiry.
type pgRunner struct {
	cfg     *config.Config
	pc      postgres.Config
	pub     publish.Publisher
	log     *slog.Logger
	metrics *processor.Metrics
	label   string
	shadow  publish.ShadowStore             // optional
	current atomic.Pointer[postgres.Source] // the streaming source, for /readyz
}

func (r *pgRunner) Ready() bool {
	s := r.current.Load()
	return s != nil && s.Ready()
}

func (r *pgRunner) newProcessor(src changefeed.Source) (*processor.Processor, error) {
	mapper, err := publish.NewMapper(r.cfg.Mappings, publish.MapperOptions{
		ShadowSize: r.cfg.Publish.ShadowSize, MaxChangeBytes: r.cfg.Publish.Batch.MaxBytes - 4096, Logger: r.log, Store: r.shadow})
	if err != nil {
		return nil, err
	}
	b := r.cfg.Publish.Batch
	return processor.New(processor.Config{
		Source:      r.label,
		Batch:       publish.BatchLimits{MaxChanges: b.MaxChanges, MaxBytes: b.MaxBytes, MaxDelay: b.MaxDelay.D()},
		Parallelism: r.cfg.Publish.Parallelism,
		MaxPending:  r.cfg.Publish.MaxPending,
		Logger:      r.log,
		Metrics:     r.metrics,
		ShadowStore: r.shadow,
	}, src, mapper, r.pub), nil
}

// Run blocks until ctx ends or the source fails for good.
func (r *pgRunner) Run(ctx context.Context) error {
	shadow, closeShadow, err := openShadowStore(ctx, r.cfg)
	if err != nil {
		return err
	}
	defer closeShadow()
	r.shadow = shadow
	if r.cfg.Lease.Store != "postgres" {
		src := postgres.New(r.pc)
		r.current.Store(src)
		p, err := r.newProcessor(src)
		if err != nil {
			return err
		}
		return p.Run(ctx)
	}
	pool, err := pgxpool.New(ctx, r.cfg.Lease.Postgres.URL)
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := pgstore.New(ctx, pool, r.cfg.Lease.Postgres.Table)
	if err != nil {
		return err
	}
	var (
		fatalMu sync.Mutex
		fatal   error
	)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	mgr, err := lease.NewManager(lease.Config{
		Store:           store,
		Prefix:          r.cfg.Lease.Processor,
		Owner:           r.cfg.Lease.Owner,
		AcquireInterval: r.cfg.Lease.AcquireInterval.D(),
		RenewInterval:   r.cfg.Lease.RenewInterval.D(),
		Expiry:          r.cfg.Lease.Expiry.D(),
		Logger:          r.log.With("part", "lease"),
		Bootstrap: func(context.Context) ([]*lease.Lease, error) {
			return []*lease.Lease{lease.ForPartition(r.cfg.Lease.Processor, r.pc.Slot)}, nil
		},
		Worker: lease.WorkerFunc(func(ctx context.Context, l *lease.Lease, cp lease.Checkpointer) error {
			r.log.Info("holding the slot's lease; streaming", "lease", l.ID)
			src := postgres.New(r.pc)
			r.current.Store(src)
			defer r.current.Store(nil)
			p, err := r.newProcessor(&leasedSource{Source: src, cp: cp})
			if err != nil {
				return err
			}
			err = p.Run(ctx)
			if err != nil {
				// A configuration problem: every instance would hit it.
				fatalMu.Lock()
				fatal = err
				fatalMu.Unlock()
				stop()
			}
			return err
		}),
	})
	if err != nil {
		return err
	}
	r.log.Info("waiting for the slot's lease", "owner", mgr.Owner(), "processor", r.cfg.Lease.Processor)
	err = mgr.Run(runCtx)
	fatalMu.Lock()
	defer fatalMu.Unlock()
	if fatal != nil {
		return fatal
	}
	return err
}

// leasedSource also records the flushed LSN in the lease (at most once a
// second), so `changecast leases list` shows where the slot is.
type leasedSource struct {
	*postgres.Source
	cp   lease.Checkpointer
	last time.Time
}

func (s *leasedSource) Checkpoint(ctx context.Context, pos changefeed.Position) error {
	if err := s.Source.Checkpoint(ctx, pos); err != nil {
		return err
	}
	if time.Since(s.last) < time.Second {
		return nil
	}
	s.last = time.Now()
	return s.cp.Checkpoint(ctx, string(pos))
}
