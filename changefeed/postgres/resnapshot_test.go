package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/changecast/changecast/changefeed/postgres"
	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/publish"
)

// TestResnapshot: rows written before the stream existed reach a client
// only through a resnapshot, which republishes every row, whole, beside
// the stream while a writer goes on; the client then holds every row.
func TestResnapshot(t *testing.T) {
	dbURL := testkit.Database(t)
	db := testkit.Connect(t, dbURL)
	// REPLICA IDENTITY FULL: a change of a row the worker never saw is
	// routable and whole (under DEFAULT it may need a refetch until the
	// resnapshot reaches the row: a limit of DEFAULT, not of resnapshots).
	testkit.CreateWorkloadTables(t, db, true, "public.orders")
	w := testkit.NewWorkload(testkit.Seed(t), "public.orders")
	if err := w.Run(db, 300); err != nil {
		t.Fatal(err)
	}
	// The slot starts now: the rows above are not in its stream.
	p := startPipeline(t, dbURL, pipeOpts{tables: []string{"public.orders"}, slot: "resnap",
		mappings: []publish.Mapping{{Collection: "public.orders", Hub: "h", Group: "g-{/tenant}"}}})

	wdb := testkit.Connect(t, dbURL)
	ctx, stop := context.WithCancel(context.Background())
	writes := testkit.Go(t, func() error {
		for ctx.Err() == nil {
			if err := w.Run(wdb, 5); err != nil {
				return err
			}
		}
		return nil
	})
	testkit.Exec(t, db, postgres.ResnapshotSQL, "resnap")
	testkit.Until(t, 30*time.Second, "the resnapshot to republish the old rows", func() bool {
		return p.cap.rep.Counts().Upserts >= 250
	})
	stop()
	if err := <-writes; err != nil {
		t.Fatal(err)
	}
	want := testkit.DBDocs(t, db, "public.orders", "id")
	testkit.Eventually(t, 30*time.Second, "the client to hold every row", func() string {
		return diffReplica(t, p.cap.rep, want, tenantAudience, "public.orders")
	})
	if _, dirty := p.cap.rep.Snapshot(); len(dirty) != 0 {
		t.Fatalf("%d rows would need a refetch: %v", len(dirty), dirty)
	}
}
