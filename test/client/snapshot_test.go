package client_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/changecast/changecast/internal/testkit"
)

// TestSnapshotDifferential: a writer changes rows at a steady rate
// (inserts, updates of plain, NULL and TOASTed columns, routing moves
// between tenants, key changes, deletes, rolled back transactions) while 20
// clients join at random moments, each building its replica only from the
// snapshot and live messages. At the end every replica equals its tenant's
// rows exactly, and no client ever needed a refetch — under REPLICA
// IDENTITY DEFAULT and FULL.
func TestSnapshotDifferential(t *testing.T) {
	testkit.Postgres(t)
	for _, full := range []bool{false, true} {
		name := "default"
		if full {
			name = "full"
		}
		t.Run(name, func(t *testing.T) {
			dbURL := testkit.Database(t)
			db := testkit.Connect(t, dbURL)
			testkit.CreateWorkloadTables(t, db, full, "public.orders")
			base := startWorker(t, dbURL, "snapdiff", "")

			// A few rows before anyone connects, so the first snapshots
			// are not empty.
			w := testkit.NewWorkload(testkit.Seed(t), "public.orders")
			if err := w.Run(db, 200); err != nil {
				t.Fatal(err)
			}
			tenants := []string{"t0", "t1", "t2", "t3"}
			clients := startClients(t, base, 20, tenants, 4*time.Second)

			writeFor(t, w, db, 6*time.Second) // while the clients join
			clients.waitStarted(20, 30*time.Second)

			var reports []clientReport
			testkit.Eventually(t, 30*time.Second, "every replica to equal its tenant's rows", func() string {
				reports = clients.dump()
				return diffClients(t, reports, tenantRows(t, db))
			})
			t.Log(checkReports(t, reports))
		})
	}
}

// checkReports fails the test for a client that needed a refetch or saw an
// error, and when no client applied a patch (the run would not have
// exercised the version rule); it sums what the clients did.
func checkReports(t *testing.T, reports []clientReport) string {
	t.Helper()
	var msgs, patches, snaps, settled int
	for _, r := range reports {
		// A gap that a later change settled (an old patch of a row deleted
		// before the client's snapshot, then its delete) costs nothing; a
		// refetch would be a miss of the snapshot.
		if r.Stats["refetches"] != 0 || len(r.Errors) != 0 {
			t.Errorf("client %d (%s): %d refetches; errors %v", r.I, r.Tenant, r.Stats["refetches"], r.Errors)
		}
		settled += r.Stats["gaps"]
		msgs += r.Stats["changes"]
		patches += r.Stats["patches"]
		snaps += r.Client["snapshotDocs"]
	}
	if patches == 0 {
		t.Error("no patch was applied: the test did not exercise the version rule")
	}
	return fmt.Sprintf("%d clients: %d changes received, %d patches applied, %d snapshot documents, %d old patches settled without a refetch",
		len(reports), msgs, patches, snaps, settled)
}
