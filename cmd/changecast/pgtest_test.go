package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// testDatabase creates a fresh database on the test cluster and connects to
// it; the database, its slots and the connection go when the test ends.
func testDatabase(t *testing.T, prefix string) (string, *pgx.Conn) {
	t.Helper()
	base := os.Getenv("CHANGECAST_PG_URL")
	if base == "" {
		t.Fatal(`CHANGECAST_PG_URL is not set: run the tests with make test, or eval "$(scripts/pg.sh start)" first`)
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("t_%s_%d", prefix, time.Now().UnixNano()%1e6)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active", name)
		admin.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)")
		admin.Close(ctx)
	})
	u, _ := url.Parse(base)
	u.Path = "/" + name
	db, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(ctx) })
	return u.String(), db
}
