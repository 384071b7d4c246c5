package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/changecast/changecast/changefeed"
)

// SnapshotSQL is the SELECT, with its arguments, that Snapshot runs for q
// (its first round), and the pool it runs it on; for tests that look at
// its plan.
func (s *Slot) SnapshotSQL(ctx context.Context, q changefeed.SnapshotQuery) (string, []any, *pgxpool.Pool, error) {
	src := s.current.Load()
	if src == nil {
		return "", nil, nil, errors.New("not streaming")
	}
	pool, err := s.snapshotPool(ctx)
	if err != nil {
		return "", nil, nil, err
	}
	table, ok := src.tableOf(q.Collection)
	if !ok {
		return "", nil, nil, errors.New("not a streamed table")
	}
	sel, err := src.selectFor(ctx, pool, table, q)
	if err != nil {
		return "", nil, nil, err
	}
	sql, args := sel.query(false)
	return sql, args, pool, nil
}

// HeldAfterReset is heldAfterReset, for the tests.
var HeldAfterReset = heldAfterReset
