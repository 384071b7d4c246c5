package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/changecast/changecast/changefeed"
)

// A resnapshot republishes the current rows of every streamed table through
// the stream, as whole documents (Change.Refresh), while streaming goes on:
// Debezium's incremental snapshot. It is triggered by a logical message
// (ResnapshotSQL) that the stream reader decodes, so it is durable (a
// worker that is down starts it when it is back) and reaches the instance
// that streams. Pages are read with the watermark rounds of snapshots and
// published at their watermark, so each row goes out in its place in the
// stream: versions stay monotonic per document. It also fills a persistent
// shadow store.

// ResnapshotSQL is the statement that asks the worker streaming slot to
// resnapshot; run it with the slot's name as $1 (empty: every slot of the
// database).
const ResnapshotSQL = "SELECT pg_logical_emit_message(true, '" + resnapshotPrefix + "', $1)"

// resnapshotPage is the rows published per watermark.
const resnapshotPage = 1000

// startResnapshot runs a resnapshot in the background, unless one runs.
func (s *Source) startResnapshot() {
	if !s.resnapshotting.CompareAndSwap(false, true) {
		s.cfg.Logger.Info("resnapshot asked while one runs; ignored")
		return
	}
	ctx := s.runCtx
	s.jobs.Go(func() {
		defer s.resnapshotting.Store(false)
		start := time.Now()
		n, err := s.resnapshot(ctx)
		switch {
		case ctx.Err() != nil:
			s.cfg.Logger.Warn("resnapshot stopped with the stream; run it again", "rows", n)
		case err != nil:
			s.cfg.Logger.Error("resnapshot failed; run it again", "rows", n, "err", err)
		default:
			s.cfg.Logger.Info("resnapshot done", "rows", n, "took", time.Since(start).Round(time.Millisecond).String())
		}
	})
}

func (s *Source) resnapshot(ctx context.Context) (int, error) {
	cfg, err := pgxpool.ParseConfig(s.cfg.URL)
	if err != nil {
		return 0, err
	}
	snapshotSession(cfg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	s.cfg.Logger.Info("resnapshot: republishing every row", "tables", s.cfg.Tables)
	n := 0
	for _, table := range s.cfg.Tables {
		q := changefeed.SnapshotQuery{Collection: table, Limit: resnapshotPage}
		for {
			page, err := s.snapshot(ctx, pool, s.wins, q, true)
			if err != nil {
				return n, err
			}
			n += len(page.Docs)
			if page.Next == "" {
				break
			}
			q.After = page.Next
		}
	}
	return n, nil
}
