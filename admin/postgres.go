package admin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/changecast/changecast/changefeed/postgres"
	"github.com/changecast/changecast/internal/connect"
	"github.com/changecast/changecast/lease"
	"github.com/changecast/changecast/schema/config"
)

func pgLeases(ctx context.Context, cfg *config.Config, o LeasesOptions) (*LeaseReport, error) {
	store := o.Store
	pg := cfg.Source.Postgres
	db, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		return nil, err
	}
	defer db.Close(context.WithoutCancel(ctx))
	st := &SlotStatus{Slot: pg.Slot}
	rep := &LeaseReport{Processor: cfg.Lease.Processor, Slot: st}
	// With NoLag the server's WAL position is not asked for (a standby
	// cannot give it, and it is a function call on a busy primary).
	lag := "pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8"
	retained := "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8"
	if o.NoLag {
		lag, retained = "NULL::int8", "NULL::int8"
	}
	err = db.QueryRow(ctx, `SELECT active, coalesce(confirmed_flush_lsn::text, ''), coalesce(wal_status, ''), `+lag+`, `+retained+`, safe_wal_size
		FROM pg_replication_slots WHERE slot_name = $1`, pg.Slot).Scan(&st.Active, &st.ConfirmedFlushLSN, &st.WALStatus, &st.LagBytes,
		&st.RetainedBytes, &st.SafeWALBytes)
	if errors.Is(err, pgx.ErrNoRows) {
		return rep, nil
	}
	if err != nil {
		return nil, err
	}
	st.Exists = true
	if cfg.Lease.Store == "postgres" || store != nil {
		if l, err := pgSlotLease(ctx, cfg, store); err != nil {
			st.LeaseError = err.Error()
		} else if l != nil {
			st.Owner = l.Owner
			st.LeaseAge = Duration(l.Age())
		}
	}
	return rep, nil
}

func pgSlotLease(ctx context.Context, cfg *config.Config, store lease.Store) (*lease.Lease, error) {
	if store == nil {
		s, closeStore, err := connect.LeaseStore(ctx, cfg, nil)
		if err != nil {
			return nil, err
		}
		defer closeStore()
		store = s
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

// sqlstateObjectInUse is PostgreSQL's object_in_use: the slot is active.
const sqlstateObjectInUse = "55006"

func pgReset(ctx context.Context, cfg *config.Config, to string) (*Reset, error) {
	pg := cfg.Source.Postgres
	var target string
	var want pglogrepl.LSN // with an LSN: where the slot must move to
	switch {
	case to == "now":
		target = "pg_current_wal_lsn()"
	case strings.Contains(to, "/"):
		lsn, err := pglogrepl.ParseLSN(to)
		if err != nil {
			return nil, argErrorf("--to %q is not an LSN (like 0/16B3748)", to)
		}
		want = lsn
		target = "'" + lsn.String() + "'::pg_lsn"
	default:
		return nil, argErrorf("a PostgreSQL slot moves only forward: --to now or --to <LSN>. "+
			"To read from an earlier point, recreate the slot (%s) from a backup or snapshot; changes before its creation are not in it", pg.Slot)
	}
	db, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		return nil, err
	}
	defer db.Close(context.WithoutCancel(ctx))
	// Refuse what the server would refuse with a raw error (or silently
	// ignore: advancing to a position behind the slot is a no-op), before
	// ending the worker's connection for nothing.
	var at string
	err = db.QueryRow(ctx, `SELECT coalesce(confirmed_flush_lsn::text, '') FROM pg_replication_slots WHERE slot_name = $1`, pg.Slot).Scan(&at)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, argErrorf("slot %s does not exist yet: the first worker creates it", pg.Slot)
	}
	if err != nil {
		return nil, err
	}
	if cur, perr := pglogrepl.ParseLSN(at); want != 0 && perr == nil && want < cur {
		return nil, argErrorf("--to %s is behind slot %s: the slot is at %s; a slot only moves forward "+
			"(what it confirmed, the server may have recycled)", want, pg.Slot, cur)
	}
	// A slot in use cannot be advanced: end the worker's replication
	// connection (it reconnects with backoff and resumes from the new
	// position), then advance before it is back.
	var moved string
	for attempt := 0; ; attempt++ {
		if _, err := db.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active`, pg.Slot); err != nil {
			return nil, fmt.Errorf("end the slot's replication connection: %w", err)
		}
		err = db.QueryRow(ctx, `SELECT end_lsn::text FROM pg_replication_slot_advance($1, `+target+`)`, pg.Slot).Scan(&moved)
		var pe *pgconn.PgError
		if err == nil || attempt == 20 || !errors.As(err, &pe) || pe.Code != sqlstateObjectInUse {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err != nil {
		return nil, err
	}
	return &Reset{Processor: cfg.Lease.Processor, Slot: pg.Slot, LSN: moved}, nil
}

// pgResnapshot asks the worker streaming the slot to republish every row:
// a logical message in the slot's WAL, so a worker that is down now does
// it when it is back.
func pgResnapshot(ctx context.Context, cfg *config.Config) (*Reset, error) {
	pg := cfg.Source.Postgres
	db, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		return nil, err
	}
	defer db.Close(context.WithoutCancel(ctx))
	if _, err := db.Exec(ctx, postgres.ResnapshotSQL, pg.Slot); err != nil {
		return nil, fmt.Errorf("ask for a resnapshot: %w", err)
	}
	return &Reset{Processor: cfg.Lease.Processor, Slot: pg.Slot, Resnapshot: true}, nil
}
