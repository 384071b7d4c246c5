// Package pgstore keeps leases in a PostgreSQL table, so that instances
// sharing a database share leases. The PostgreSQL source also uses it for
// single-active-consumer election over its replication slot (one lease, see
// package lease).
//
// The table holds one row per lease. Every write is an UPDATE (or DELETE)
// conditional on the row's version column, which is the lease's ETag, and
// the database's now() stamps renewals and decides expiry, so instances
// whose clocks are skewed still agree on who may take a lease.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/changecast/changecast/lease"
)

// DefaultTable is the table New uses when given "".
const DefaultTable = "changecast_leases"

// Store is a lease.Store on a PostgreSQL table. Safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	q    queries
}

var _ lease.Store = (*Store)(nil)

// New returns a Store on table ("name" or "schema.name"; "" means
// DefaultTable), creating the table if it is missing. The pool stays the
// caller's to close.
func New(ctx context.Context, pool *pgxpool.Pool, table string) (*Store, error) {
	if table == "" {
		table = DefaultTable
	}
	s := &Store{pool: pool, q: newQueries(pgx.Identifier(strings.Split(table, ".")).Sanitize())}
	if err := s.createTable(ctx); err != nil {
		return nil, fmt.Errorf("pgstore: create table %s: %w", table, err)
	}
	return s, nil
}

// The columns mirror the .NET lease document (lease.Lease); an empty string means unset,
// so that operators can read the table without NULL handling. id uses the
// "C" collation so that ORDER BY and prefix matching are bytewise, as in the
// other stores.
const ddl = `CREATE TABLE IF NOT EXISTS %s (
	id             text COLLATE "C" PRIMARY KEY,
	lease_token    text NOT NULL DEFAULT '',
	range_min      text NOT NULL DEFAULT '',
	range_max      text NOT NULL DEFAULT '',
	partition_id   text NOT NULL DEFAULT '',
	owner          text NOT NULL DEFAULT '',
	continuation   text NOT NULL DEFAULT '',
	properties     jsonb NOT NULL DEFAULT '{}',
	mode           text NOT NULL DEFAULT '',
	schema_version integer NOT NULL DEFAULT 0,
	renewed_at     timestamptz NOT NULL DEFAULT now(),
	version        bigint NOT NULL
)`

func (s *Store) createTable(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		_, err := s.pool.Exec(ctx, s.q.create)
		var pgErr *pgconn.PgError
		if attempt < 3 && errors.As(err, &pgErr) && (pgErr.Code == "23505" || pgErr.Code == "42P07" || pgErr.Code == "42710") {
			// Another instance created the table at the same moment: IF NOT
			// EXISTS does not cover that race on the catalog. Once it has
			// committed, the retry finds the table.
			continue
		}
		return err
	}
}

// columns are scanned by scan, in this order; the last is the database's
// clock at the statement, which becomes Lease.ReadAt.
const columns = `id, lease_token, range_min, range_max, partition_id, owner, continuation,
	properties, mode, schema_version, renewed_at, version, now()`

type queries struct {
	create, list, insert, acquire, renew, checkpoint, release, delete, current string
}

func newQueries(t string) queries {
	return queries{
		create: fmt.Sprintf(ddl, t),
		list:   fmt.Sprintf(`SELECT %s FROM %s WHERE left(id, length($1)) = $1 ORDER BY id`, columns, t),
		insert: fmt.Sprintf(`INSERT INTO %s (id, lease_token, range_min, range_max, partition_id, owner,
			continuation, properties, mode, schema_version, renewed_at, version)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now(), $11)
			ON CONFLICT (id) DO NOTHING RETURNING %s`, t, columns),
		// $4: steal; $5: expiry in microseconds.
		acquire: fmt.Sprintf(`UPDATE %s SET owner = $3, renewed_at = now(), version = version + 1
			WHERE id = $1 AND version = $2
			AND (owner = '' OR owner = $3 OR $4::boolean OR renewed_at < now() - $5::bigint * interval '1 microsecond')
			RETURNING %s`, t, columns),
		renew: fmt.Sprintf(`UPDATE %s SET renewed_at = now(), version = version + 1
			WHERE id = $1 AND version = $2 RETURNING %s`, t, columns),
		checkpoint: fmt.Sprintf(`UPDATE %s SET continuation = $3, renewed_at = now(), version = version + 1
			WHERE id = $1 AND version = $2 RETURNING %s`, t, columns),
		release: fmt.Sprintf(`UPDATE %s SET owner = '', renewed_at = now(), version = version + 1
			WHERE id = $1 AND version = $2 RETURNING %s`, t, columns),
		delete:  fmt.Sprintf(`DELETE FROM %s WHERE id = $1 AND version = $2`, t),
		current: fmt.Sprintf(`SELECT owner, version FROM %s WHERE id = $1`, t),
	}
}

func scan(row pgx.Row) (*lease.Lease, error) {
	var l lease.Lease
	var version int64
	err := row.Scan(&l.ID, &l.Token, &l.Range.Min, &l.Range.Max, &l.Range.Partition, &l.Owner,
		&l.Continuation, &l.Properties, &l.Mode, &l.Schema, &l.Timestamp, &version, &l.ReadAt)
	if err != nil {
		return nil, err
	}
	l.ETag = strconv.FormatInt(version, 10)
	l.Timestamp, l.ReadAt = l.Timestamp.UTC(), l.ReadAt.UTC()
	if len(l.Properties) == 0 {
		l.Properties = nil
	}
	return &l, nil
}

// version parses an ETag this store issued. Any other ETag cannot match a
// row; ok is false.
func version(etag string) (v int64, ok bool) {
	v, err := strconv.ParseInt(etag, 10, 64)
	return v, err == nil
}

// List implements lease.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]*lease.Lease, error) {
	rows, err := s.pool.Query(ctx, s.q.list, prefix)
	if err != nil {
		return nil, fmt.Errorf("pgstore: list: %w", err)
	}
	ls, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*lease.Lease, error) { return scan(r) })
	if err != nil {
		return nil, fmt.Errorf("pgstore: list: %w", err)
	}
	return ls, nil
}

// Create implements lease.Store.
func (s *Store) Create(ctx context.Context, l *lease.Lease) (*lease.Lease, error) {
	if l.ID == "" {
		return nil, errors.New("pgstore: create: empty id")
	}
	props := l.Properties
	if props == nil {
		props = map[string]string{}
	}
	// Versions start at random so that a copy read before a delete can
	// never match a re-created lease of the same id.
	n, err := scan(s.pool.QueryRow(ctx, s.q.insert, l.ID, l.Token, l.Range.Min, l.Range.Max,
		l.Range.Partition, l.Owner, l.Continuation, props, l.Mode, l.Schema, rand.Int64N(1<<62)))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, &lease.ConflictError{Op: "create", ID: l.ID, Reason: lease.ReasonExists}
	case err != nil:
		return nil, fmt.Errorf("pgstore: create %s: %w", l.ID, err)
	}
	return n, nil
}

// write runs one conditional UPDATE; no row means the condition failed.
func (s *Store) write(ctx context.Context, op string, l *lease.Lease, query string, args ...any) (*lease.Lease, error) {
	v, ok := version(l.ETag)
	if !ok {
		return nil, s.refused(ctx, op, l, false)
	}
	n, err := scan(s.pool.QueryRow(ctx, query, append([]any{l.ID, v}, args...)...))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, s.refused(ctx, op, l, true)
	case err != nil:
		return nil, fmt.Errorf("pgstore: %s %s: %w", op, l.ID, err)
	}
	return n, nil
}

// refused explains a write whose condition failed by reading the row
// again. The row may have moved on since, but any answer is a conflict.
func (s *Store) refused(ctx context.Context, op string, l *lease.Lease, parsed bool) error {
	var owner string
	var v int64
	err := s.pool.QueryRow(ctx, s.q.current, l.ID).Scan(&owner, &v)
	gone := errors.Is(err, pgx.ErrNoRows)
	if err != nil && !gone {
		return fmt.Errorf("pgstore: %s %s: refused, then: %w", op, l.ID, err)
	}
	same := false
	if want, ok := version(l.ETag); ok && parsed && !gone {
		same = v == want
	}
	switch {
	case same && op == "acquire":
		return &lease.ConflictError{Op: op, ID: l.ID, Reason: lease.ReasonOwned, Owner: owner}
	case op == "acquire" || op == "delete":
		if gone {
			return &lease.ConflictError{Op: op, ID: l.ID, Reason: lease.ReasonGone}
		}
		return &lease.ConflictError{Op: op, ID: l.ID, Reason: lease.ReasonChanged, Owner: owner}
	case gone:
		return &lease.LostError{Op: op, ID: l.ID, Gone: true}
	case owner != l.Owner:
		return &lease.LostError{Op: op, ID: l.ID, Owner: owner}
	}
	return &lease.ConflictError{Op: op, ID: l.ID, Reason: lease.ReasonChanged, Owner: owner}
}

// Acquire implements lease.Store.
func (s *Store) Acquire(ctx context.Context, l *lease.Lease, owner string, opts lease.AcquireOptions) (*lease.Lease, error) {
	if owner == "" {
		return nil, errors.New("pgstore: acquire: empty owner")
	}
	return s.write(ctx, "acquire", l, s.q.acquire, owner, opts.Steal, opts.ExpiryOrDefault().Microseconds())
}

// Renew implements lease.Store.
func (s *Store) Renew(ctx context.Context, l *lease.Lease) (*lease.Lease, error) {
	return s.write(ctx, "renew", l, s.q.renew)
}

// Checkpoint implements lease.Store.
func (s *Store) Checkpoint(ctx context.Context, l *lease.Lease, continuation string) (*lease.Lease, error) {
	return s.write(ctx, "checkpoint", l, s.q.checkpoint, continuation)
}

// Release implements lease.Store.
func (s *Store) Release(ctx context.Context, l *lease.Lease) error {
	_, err := s.write(ctx, "release", l, s.q.release)
	var lost *lease.LostError
	if errors.As(err, &lost) && lost.Gone {
		return nil
	}
	return err
}

// Delete implements lease.Store.
func (s *Store) Delete(ctx context.Context, l *lease.Lease) error {
	v, ok := version(l.ETag)
	if ok {
		tag, err := s.pool.Exec(ctx, s.q.delete, l.ID, v)
		if err != nil {
			return fmt.Errorf("pgstore: delete %s: %w", l.ID, err)
		}
		if tag.RowsAffected() == 1 {
			return nil
		}
	}
	err := s.refused(ctx, "delete", l, ok)
	var c *lease.ConflictError
	if errors.As(err, &c) && c.Reason == lease.ReasonGone {
		return nil
	}
	return err
}
