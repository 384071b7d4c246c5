package testkit

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres returns the URL of the test cluster (a private PostgreSQL with
// wal_level=logical that `make test` starts and exports as
// CHANGECAST_PG_URL). Under -short the test is skipped; without the
// variable it fails, saying how to get one.
func Postgres(t testing.TB) string {
	t.Helper()
	Integration(t, "PostgreSQL with wal_level=logical (CHANGECAST_PG_URL; make test starts one)")
	u := os.Getenv("CHANGECAST_PG_URL")
	if u == "" {
		t.Fatal(`CHANGECAST_PG_URL is not set: run the tests with make test, or eval "$(scripts/pg.sh start)" first (go test -short skips this test)`)
	}
	return u
}

var dbSeq atomic.Int64

// Database creates a fresh database on the test cluster and returns its
// URL; when the test ends its replication slots and the database itself are
// dropped. The name is derived from the test's and always quoted.
func Database(t testing.TB) string {
	t.Helper()
	return DatabaseOn(t, Postgres(t))
}

// DatabaseOn is Database on the cluster at base (a cluster of the test's
// own, e.g. one it restarts).
func DatabaseOn(t testing.TB, base string) string {
	t.Helper()
	ctx := context.Background()
	name := strings.ToLower(strings.NewReplacer("/", "_", "-", "_", " ", "_").Replace(t.Name()))
	suffix := fmt.Sprintf("_%d_%d", os.Getpid()%100000, dbSeq.Add(1))
	if len(name)+len(suffix) > 60 {
		name = name[len(name)+len(suffix)-60:]
	}
	name = "t_" + name + suffix
	quoted := pgx.Identifier{name}.Sanitize()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+quoted); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin, err := pgx.Connect(ctx, base)
		if err != nil {
			return
		}
		defer admin.Close(ctx)
		// A slot still in use by a stopping walsender cannot be dropped yet.
		for i := 0; i < 50; i++ {
			_, err = admin.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1", name)
			if err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		admin.Exec(ctx, "DROP DATABASE "+quoted+" WITH (FORCE)")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// Connect opens a connection to url that is closed when the test ends.
func Connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	db, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(context.Background()) })
	return db
}

// Pool opens a small connection pool to url that is closed when the test
// ends.
func Pool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatalf("pool: %v", err)
	}
	cfg.MaxConns = 4
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Exec runs sql on db and fails the test on error.
func Exec(t testing.TB, db *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := db.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// Streaming waits until the walsender holding slot has started replication
// (pg_stat_replication state catchup or streaming). A slot is already
// active while CREATE_REPLICATION_SLOT waits for the transactions running
// at its start (other tests') to end, before its consistent point: a row
// written then is not in the slot's stream, and a test that waited only
// for "active" waits for it in vain.
func Streaming(t testing.TB, db *pgx.Conn, slot string, timeout time.Duration) {
	t.Helper()
	Until(t, timeout, "slot "+slot+" to stream", func() bool {
		var ok bool
		err := db.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_replication_slots s
			JOIN pg_stat_replication r ON r.pid = s.active_pid
			WHERE s.slot_name = $1 AND r.state IN ('catchup', 'streaming'))`, slot).Scan(&ok)
		return err == nil && ok
	})
}
