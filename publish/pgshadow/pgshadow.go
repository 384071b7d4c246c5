// Package pgshadow is a publish.ShadowStore in a PostgreSQL table: the last
// published version of each document, so a restarted worker or a new lease
// owner keeps sending patches.
//
// Cost: one row per document and mapping (the projected document as sent),
// one upsert per published change (batched per published batch, before the
// checkpoint), and one primary-key read per document the worker has not seen
// since it started.
package pgshadow

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/schema/wire"
)

// DefaultTable is the table used when none is named.
const DefaultTable = "changecast_shadow"

// Store is the table-backed store. It is safe for concurrent use.
type Store struct {
	pool  *pgxpool.Pool
	table string // quoted identifier
}

// New returns a store on table (DefaultTable when empty), creating the table
// when missing.
func New(ctx context.Context, pool *pgxpool.Pool, table string) (*Store, error) {
	if table == "" {
		table = DefaultTable
	}
	s := &Store{pool: pool, table: pgx.Identifier{table}.Sanitize()}
	// vnum orders versions ("1842", "23456789.3") as numbers, segment by
	// segment, so that a late save of an older version never wins.
	_, err := pool.Exec(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
		key text COLLATE "C" PRIMARY KEY,
		v text NOT NULL,
		vnum numeric[] NOT NULL,
		doc bytea,
		hub text NOT NULL DEFAULT '',
		grp text NOT NULL DEFAULT '',
		usr text NOT NULL DEFAULT '',
		method text NOT NULL DEFAULT '',
		saved_at timestamptz NOT NULL DEFAULT now())`, s.table))
	var pe interface{ SQLState() string }
	if errors.As(err, &pe) && (pe.SQLState() == "23505" || pe.SQLState() == "42P07" || pe.SQLState() == "42710") {
		err = nil // another instance created it at the same time
	}
	if err != nil {
		return nil, fmt.Errorf("pgshadow: create table %s: %w", table, err)
	}
	return s, nil
}

// Load implements publish.ShadowStore.
func (s *Store) Load(ctx context.Context, key string) (publish.ShadowRecord, bool, error) {
	r := publish.ShadowRecord{Key: key}
	err := s.pool.QueryRow(ctx, fmt.Sprintf(`SELECT v, doc, hub, grp, usr, method FROM %s WHERE key = $1`, s.table), key).
		Scan(&r.V, &r.Doc, &r.Audience.Hub, &r.Audience.Group, &r.Audience.User, &r.Audience.Method)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("pgshadow: load: %w", err)
	}
	return r, true, nil
}

// Save implements publish.ShadowStore: one round trip per call. Records are
// written in key order, one per key (the newest), so concurrent saves lock
// rows in the same order and never deadlock.
func (s *Store) Save(ctx context.Context, recs []publish.ShadowRecord) error {
	newest := map[string]publish.ShadowRecord{}
	var prefixes []publish.ShadowRecord
	for _, r := range recs {
		if r.Prefix {
			prefixes = append(prefixes, r)
			continue
		}
		if o, ok := newest[r.Key]; !ok || wire.CompareVersions(r.V, o.V) > 0 {
			newest[r.Key] = r
		}
	}
	keys := make([]string, 0, len(newest))
	for k := range newest {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	ordered := prefixes
	for _, k := range keys {
		ordered = append(ordered, newest[k])
	}
	b := &pgx.Batch{}
	for _, r := range ordered {
		if r.Prefix {
			b.Queue(fmt.Sprintf(`DELETE FROM %s WHERE starts_with(key, $1) AND vnum < string_to_array($2, '.')::numeric[]`, s.table), r.Key, r.V)
			continue
		}
		b.Queue(fmt.Sprintf(`INSERT INTO %[1]s AS t (key, v, vnum, doc, hub, grp, usr, method)
			VALUES ($1, $2, string_to_array($2, '.')::numeric[], $3, $4, $5, $6, $7)
			ON CONFLICT (key) DO UPDATE SET v = excluded.v, vnum = excluded.vnum, doc = excluded.doc,
				hub = excluded.hub, grp = excluded.grp, usr = excluded.usr, method = excluded.method, saved_at = now()
			WHERE t.vnum < excluded.vnum`, s.table),
			r.Key, r.V, r.Doc, r.Audience.Hub, r.Audience.Group, r.Audience.User, r.Audience.Method)
	}
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("pgshadow: save: %w", err)
	}
	return nil
}
