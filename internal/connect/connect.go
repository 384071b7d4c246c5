// Package connect opens what a config file names: the Cosmos DB client, the
// lease store, the persistent shadow store and Redis. The worker assembly and the
// admin operations both use it, so they reach the same places the same way.
package connect

import (
	"context"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/changecast/changecast/lease"
	"github.com/changecast/changecast/lease/cosmosstore"
	"github.com/changecast/changecast/lease/pgstore"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/pgshadow"
	"github.com/changecast/changecast/schema/config"
)

// Cosmos connects with the account key, or with Microsoft Entra ID through
// DefaultAzureCredential (environment, workload identity, managed identity,
// Azure CLI…) when credential: azure. Errors name the field at fault.
func Cosmos(cs *config.CosmosSource) (*azcosmos.Client, error) {
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

// LeaseStore opens lease.store; client is the source's Cosmos client (nil
// for a PostgreSQL source). close releases what the store holds.
func LeaseStore(ctx context.Context, cfg *config.Config, client *azcosmos.Client) (store lease.Store, close func(), err error) {
	switch cfg.Lease.Store {
	case "cosmos":
		lc := cfg.Lease.Cosmos
		if client == nil {
			return nil, nil, fmt.Errorf("lease.store: cosmos needs a cosmos source")
		}
		s, err := cosmosstore.New(ctx, client, lc.Database, lc.Container, cosmosstore.Options{CreateIfMissing: lc.CreateIfMissing})
		if err != nil {
			return nil, nil, fmt.Errorf("lease.cosmos: %w", err)
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
			return nil, nil, fmt.Errorf("lease.postgres: %w", err)
		}
		return s, pool.Close, nil
	}
	return lease.NewMemoryStore(), func() {}, nil
}

// ShadowStore opens publish.shadowStore when it is configured; close
// releases it. Without it, store is nil and close a no-op.
func ShadowStore(ctx context.Context, cfg *config.Config) (store publish.ShadowStore, close func(), err error) {
	ss := cfg.Publish.ShadowStore
	if ss == nil {
		return nil, func() {}, nil
	}
	pool, err := pgxpool.New(ctx, ss.URL)
	if err != nil {
		return nil, nil, fmt.Errorf("publish.shadowStore.url: %w", err)
	}
	s, err := pgshadow.New(ctx, pool, ss.Table)
	if err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("publish.shadowStore: %w", err)
	}
	return s, pool.Close, nil
}

// Redis connects to a redis:// or rediss:// URL (the client connects
// lazily; a bad URL fails here).
func Redis(url string) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	return redis.NewClient(opt), nil
}
