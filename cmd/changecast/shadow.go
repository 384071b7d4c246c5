package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/pgshadow"
	"github.com/changecast/changecast/schema/config"
)

// openShadowStore opens publish.shadowStore when it is configured; close
// releases it. Without it, both are nil-safe no-ops.
func openShadowStore(ctx context.Context, cfg *config.Config) (store publish.ShadowStore, close func(), err error) {
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
		return nil, nil, err
	}
	return s, pool.Close, nil
}
