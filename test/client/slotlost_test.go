package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/changecast/changecast/internal/testkit"
)

// TestSlotLostRecovery: changecast stops; meanwhile rows are changed and
// deleted and PostgreSQL invalidates the slot (max_slot_wal_keep_size,
// WAL written past it). Started again, changecast recreates the slot by
// itself and starts a new epoch for every stream: the clients that were
// away (their histories in Redis reach back to before the stop) reload
// instead of catching up into stale data, a client that connects later
// loads a snapshot taken on the new slot, and every replica ends exact.
func TestSlotLostRecovery(t *testing.T) {
	pc := testkit.PrivateCluster(t)
	db := testkit.Connect(t, pc.URL)
	ctx := context.Background()
	testkit.CreateWorkloadTables(t, db, false, "public.orders")
	w := testkit.NewWorkload(testkit.Seed(t), "public.orders")
	if err := w.Run(db, 300); err != nil {
		t.Fatal(err)
	}
	redisURL := testkit.Redis(t)
	hist := fmt.Sprintf("history: {store: redis, redis: {url: %q, prefix: %q}}\n", redisURL, testkit.RedisPrefix(t, redisURL))
	hubAddr := testkit.FreeAddr(t)
	base, stop := startWorkerAt(t, pc.URL, "lost", hubAddr, hist)

	tenants := []string{"t0", "t1", "t2", "t3"}
	away := startClients(t, base, 4, tenants, time.Second)
	away.waitStarted(4, 30*time.Second)
	if err := w.Run(db, 200); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "the replicas to be exact before the stop", func() string {
		return diffClients(t, away.dump(), tenantRows(t, db))
	})

	if err := stop(); err != nil {
		t.Fatalf("worker stop: %v", err)
	}
	// While changecast is down: changes it will never read, then WAL past
	// max_slot_wal_keep_size and a checkpoint, which invalidates the slot.
	if err := w.Run(db, 300); err != nil {
		t.Fatal(err)
	}
	testkit.Exec(t, db, `ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'`)
	testkit.Exec(t, db, `SELECT pg_reload_conf()`)
	testkit.Exec(t, db, `CREATE TABLE filler (x int, pad text)`)
	testkit.Eventually(t, 60*time.Second, "the slot to be invalidated", func() string {
		testkit.Exec(t, db, `INSERT INTO filler SELECT g, repeat('x', 200) FROM generate_series(1, 5000) g`)
		testkit.Exec(t, db, `SELECT pg_switch_wal()`)
		testkit.Exec(t, db, `CHECKPOINT`)
		var status string
		db.QueryRow(ctx, `SELECT coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = 'lost'`).Scan(&status)
		if status != "lost" {
			return "wal_status " + status
		}
		return ""
	})
	testkit.Exec(t, db, `ALTER SYSTEM RESET max_slot_wal_keep_size`)
	testkit.Exec(t, db, `SELECT pg_reload_conf()`)

	ops := testkit.FreeAddr(t)
	startWorkerAt(t, pc.URL, "lost", hubAddr, hist+fmt.Sprintf("server: {listen: %q}\n", ops))
	if err := w.Run(db, 200); err != nil {
		t.Fatal(err)
	}
	later := startClients(t, base, 2, tenants[:2], 0)
	later.waitStarted(2, 30*time.Second)
	if err := w.Run(db, 100); err != nil {
		t.Fatal(err)
	}
	var reports []clientReport
	testkit.Eventually(t, 60*time.Second, "every replica, old and new, to equal its tenant's rows", func() string {
		rows := tenantRows(t, db)
		reports = away.dump()
		if d := diffClients(t, reports, rows); d != "" {
			return "a client that was away: " + d
		}
		return diffClients(t, later.dump(), rows)
	})
	for _, r := range reports {
		if r.Client["reloads"] == 0 {
			t.Errorf("client %d (%s) did not reload after the slot was recreated: %v", r.I, r.Tenant, r.Client)
		}
	}
	if got := metric(t, ops, "changecast_slot_recreated_total"); got != 1 {
		t.Errorf("changecast_slot_recreated_total = %v, want 1", got)
	}
	if got := metric(t, ops, "changecast_unroutable_total"); got != 0 {
		t.Errorf("changecast_unroutable_total = %v, want 0", got)
	}
}
