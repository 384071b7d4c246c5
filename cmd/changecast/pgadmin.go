package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/changecast/changecast/lease"
	"github.com/changecast/changecast/lease/pgstore"
	"github.com/changecast/changecast/schema/config"
)

// For a PostgreSQL source the stream position is the slot itself
// (confirmed_flush_lsn); the lease, with lease.store postgres, only says
// which instance streams.

func pgLeasesList(ctx context.Context, cfg *config.Config, stdout, stderr io.Writer) int {
	pg := cfg.Source.Postgres
	db, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		fmt.Fprintln(stderr, "changecast leases list:", err)
		return 1
	}
	defer db.Close(context.WithoutCancel(ctx))
	var (
		active           bool
		confirmed, state string
		lag              *int64
	)
	err = db.QueryRow(ctx, `SELECT active, coalesce(confirmed_flush_lsn::text, ''), coalesce(wal_status, ''),
		pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8
		FROM pg_replication_slots WHERE slot_name = $1`, pg.Slot).Scan(&active, &confirmed, &state, &lag)
	if errors.Is(err, pgx.ErrNoRows) {
		fmt.Fprintf(stdout, "slot %s does not exist yet: the first worker creates it\n", pg.Slot)
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "changecast leases list:", err)
		return 1
	}
	owner, age := "-", "-"
	if cfg.Lease.Store == "postgres" {
		if l, err := pgSlotLease(ctx, cfg); err != nil {
			fmt.Fprintln(stderr, "changecast leases list: lease table:", err)
		} else if l != nil {
			if l.Owner != "" {
				owner = l.Owner
			}
			age = l.Age().Round(time.Second).String()
		}
	}
	lagText := "-"
	if lag != nil {
		lagText = fmt.Sprintf("%d bytes", *lag)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tACTIVE\tCONFIRMED_FLUSH_LSN\tLAG\tWAL_STATUS\tOWNER\tAGE")
	fmt.Fprintf(tw, "%s\t%v\t%s\t%s\t%s\t%s\t%s\n", pg.Slot, active, confirmed, lagText, state, owner, age)
	tw.Flush()
	return 0
}

func pgSlotLease(ctx context.Context, cfg *config.Config) (*lease.Lease, error) {
	pool, err := pgxpool.New(ctx, cfg.Lease.Postgres.URL)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	store, err := pgstore.New(ctx, pool, cfg.Lease.Postgres.Table)
	if err != nil {
		return nil, err
	}
	want := lease.ForPartition(cfg.Lease.Processor, cfg.Source.Postgres.Slot).ID
	ls, err := store.List(ctx, cfg.Lease.Processor+lease.Separator)
	if err != nil {
		return nil, err
	}
	for _, l := range ls {
		if l.ID == want {
			return l, nil
		}
	}
	return nil, nil
}

// pgCheckpointReset moves the slot forward to now or to an LSN. A slot
// cannot move backwards: what it has confirmed, PostgreSQL may have
// recycled.
func pgCheckpointReset(ctx context.Context, cfg *config.Config, to string, stdout, stderr io.Writer) int {
	pg := cfg.Source.Postgres
	var target string
	switch {
	case to == "now":
		target = "pg_current_wal_lsn()"
	case strings.Contains(to, "/"):
		lsn, err := pglogrepl.ParseLSN(to)
		if err != nil {
			fmt.Fprintf(stderr, "changecast checkpoint reset: --to %q is not an LSN (like 0/16B3748)\n", to)
			return 2
		}
		target = "'" + lsn.String() + "'::pg_lsn"
	default:
		fmt.Fprintf(stderr, "changecast checkpoint reset: a PostgreSQL slot moves only forward: --to now or --to <LSN>. "+
			"To read from an earlier point, recreate the slot (%s) from a backup or snapshot; changes before its creation are not in it\n", pg.Slot)
		return 2
	}
	db, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		fmt.Fprintln(stderr, "changecast checkpoint reset:", err)
		return 1
	}
	defer db.Close(context.WithoutCancel(ctx))
	// A slot in use cannot be advanced: end the worker's replication
	// connection (it reconnects with backoff and resumes from the new
	// position), then advance before it is back.
	var moved string
	for attempt := 0; ; attempt++ {
		db.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active`, pg.Slot)
		err = db.QueryRow(ctx, `SELECT end_lsn::text FROM pg_replication_slot_advance($1, `+target+`)`, pg.Slot).Scan(&moved)
		if err == nil || attempt == 20 || !strings.Contains(err.Error(), "active") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		fmt.Fprintln(stderr, "changecast checkpoint reset:", err)
		return 1
	}
	fmt.Fprintf(stdout, "slot %s now at %s; the worker resumes from there\n", pg.Slot, moved)
	return 0
}
