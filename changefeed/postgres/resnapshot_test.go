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

// TestResnapshotAskedWhileDown: a resnapshot asked while no worker streams
// the slot (the logical message waits in the slot's WAL) runs when a
// worker is back: its client, which saw no row change, gets every row.
func TestResnapshotAskedWhileDown(t *testing.T) {
	dbURL := testkit.Database(t)
	db := testkit.Connect(t, dbURL)
	testkit.CreateWorkloadTables(t, db, true, "public.orders")
	w := testkit.NewWorkload(testkit.Seed(t), "public.orders")
	if err := w.Run(db, 100); err != nil {
		t.Fatal(err)
	}
	opts := pipeOpts{tables: []string{"public.orders"}, slot: "resnapdown",
		mappings: []publish.Mapping{{Collection: "public.orders", Hub: "h", Group: "g-{/tenant}"}}}
	// The first worker creates the slot after the rows were written, and
	// stops: nothing of them is in the stream.
	first := startPipeline(t, dbURL, opts)
	first.close(t)

	testkit.Exec(t, db, postgres.ResnapshotSQL, "resnapdown")

	opts.cap = newCapture()
	back := startPipeline(t, dbURL, opts)
	want := testkit.DBDocs(t, db, "public.orders", "id")
	if len(want) == 0 {
		t.Fatal("the workload wrote no rows")
	}
	testkit.Eventually(t, 30*time.Second, "the worker that is back to republish every row", func() string {
		return diffReplica(t, back.cap.rep, want, tenantAudience, "public.orders")
	})
	if n := first.cap.rep.Counts().Changes; n != 0 {
		t.Errorf("the first worker published %d changes: the rows should reach the client only by the resnapshot", n)
	}
}
