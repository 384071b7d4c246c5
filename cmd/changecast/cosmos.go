package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/changecast/changecast/changefeed/cosmos"
	"github.com/changecast/changecast/changefeed/processor"
	"github.com/changecast/changecast/lease"
	"github.com/changecast/changecast/lease/cosmosstore"
	"github.com/changecast/changecast/lease/pgstore"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/schema/config"
)

// runCosmosWorker runs the Cosmos DB change feed processor of cfg
// (source.cosmos, lease.*) until ctx ends, publishing through pub, and
// returns once every lease has drained, checkpointed and been released.
// It registers the pipeline metrics (processor.NewMetrics) and the Cosmos
// metrics with reg (nil: none), so the caller must not register the
// pipeline metrics itself.
func runCosmosWorker(ctx context.Context, cfg *config.Config, pub publish.Publisher, log *slog.Logger, reg prometheus.Registerer) error {
	return runCosmos(ctx, cfg, pub, log, reg, nil)
}

// runCosmos is runCosmosWorker that also hands the Runner to started (for
// /readyz) once it exists.
func runCosmos(ctx context.Context, cfg *config.Config, pub publish.Publisher, log *slog.Logger, reg prometheus.Registerer, started func(*cosmos.Runner)) error {
	cs := cfg.Source.Cosmos
	if cs == nil {
		return errors.New("source.cosmos is not set")
	}
	start, err := cosmos.ParseStart(cs.StartFrom)
	if err != nil {
		return err
	}
	client, err := newCosmosClient(cs)
	if err != nil {
		return err
	}
	defer client.Close()
	store, closeStore, err := newLeaseStore(ctx, cfg, client)
	if err != nil {
		return err
	}
	defer closeStore()

	shadow, closeShadow, err := openShadowStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeShadow()
	var pm *processor.Metrics
	if reg != nil {
		pm = processor.NewMetrics(reg)
	}
	r, err := cosmos.NewRunner(cosmos.Config{
		Client:    client,
		Database:  cs.Database,
		Container: cs.Container,
		Feed: cosmos.FeedConfig{Start: start, PollInterval: cs.PollInterval.D(), MaxItems: cs.MaxItems,
			DeleteField: cs.DeleteField},
		Store:           store,
		Processor:       cfg.Lease.Processor,
		Owner:           cfg.Lease.Owner,
		AcquireInterval: cfg.Lease.AcquireInterval.D(),
		RenewInterval:   cfg.Lease.RenewInterval.D(),
		Expiry:          cfg.Lease.Expiry.D(),
		Publisher:       pub,
		NewMapper: func() (*publish.Mapper, error) {
			// One per lease: mappers are single-goroutine, and each keeps
			// its own shadow (publish.shadowSize documents per lease).
			return publish.NewMapper(cfg.Mappings, publish.MapperOptions{ShadowSize: cfg.Publish.ShadowSize,
				MaxChangeBytes: cfg.Publish.Batch.MaxBytes - 4096, Logger: log, Store: shadow})
		},
		Pipeline: processor.Config{
			Batch: publish.BatchLimits{MaxChanges: cfg.Publish.Batch.MaxChanges, MaxBytes: cfg.Publish.Batch.MaxBytes,
				MaxDelay: cfg.Publish.Batch.MaxDelay.D()},
			Parallelism: cfg.Publish.Parallelism,
			MaxPending:  cfg.Publish.MaxPending,
			Metrics:     pm,
			ShadowStore: shadow,
		},
		Metrics: cosmos.NewMetrics(reg),
		Logger:  log.With("source", "cosmos"),
	})
	if err != nil {
		return err
	}
	if started != nil {
		started(r)
	}
	return r.Run(ctx)
}

// newCosmosClient connects with the account key, or with Microsoft Entra ID
// through DefaultAzureCredential (environment, workload identity, managed
// identity, Azure CLI…) when credential: azure.
func newCosmosClient(cs *config.CosmosSource) (*azcosmos.Client, error) {
	if cs.Credential == "azure" {
		cred, err := azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return nil, fmt.Errorf("source.cosmos.credential: azure: %w", err)
		}
		return azcosmos.NewClient(cs.Endpoint, cred, nil)
	}
	cred, err := azcosmos.NewKeyCredential(cs.Key)
	if err != nil {
		return nil, fmt.Errorf("source.cosmos.key: %w", err)
	}
	return azcosmos.NewClientWithKey(cs.Endpoint, cred, nil)
}

// newLeaseStore opens lease.store; close releases what it holds.
func newLeaseStore(ctx context.Context, cfg *config.Config, client *azcosmos.Client) (lease.Store, func(), error) {
	switch cfg.Lease.Store {
	case "cosmos":
		lc := cfg.Lease.Cosmos
		s, err := cosmosstore.New(ctx, client, lc.Database, lc.Container, cosmosstore.Options{CreateIfMissing: lc.CreateIfMissing})
		if err != nil {
			return nil, nil, err
		}
		return s, func() {}, nil
	case "postgres":
		pool, err := pgxpool.New(ctx, cfg.Lease.Postgres.URL)
		if err != nil {
			return nil, nil, fmt.Errorf("lease.postgres.url: %w", err)
		}
		s, err := pgstore.New(ctx, pool, cfg.Lease.Postgres.Table)
		if err != nil {
			pool.Close()
			return nil, nil, err
		}
		return s, pool.Close, nil
	}
	return lease.NewMemoryStore(), func() {}, nil
}
