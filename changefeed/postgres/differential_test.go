package postgres_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/changecast/changecast/internal/replica"
	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/publish"
)

func tenantAudience(doc map[string]any) string { return "group:g-" + doc["tenant"].(string) }

// TestDifferential applies every published message, in order, to a client
// replica and checks that it reproduces every row exactly, under REPLICA
// IDENTITY DEFAULT and FULL.
func TestDifferential(t *testing.T) {
	testkit.Postgres(t)
	for _, full := range []bool{false, true} {
		name := "default"
		if full {
			name = "full"
		}
		t.Run(name, func(t *testing.T) {
			dbURL := testkit.Database(t)
			db := testkit.Connect(t, dbURL)
			tables := []string{"public.a", "public.b"}
			testkit.CreateWorkloadTables(t, db, full, tables...)
			var maps []publish.Mapping
			for _, tb := range tables {
				maps = append(maps, publish.Mapping{Collection: tb, Hub: "h", Group: "g-{/tenant}"})
			}
			p := startPipeline(t, dbURL, pipeOpts{tables: tables, mappings: maps})
			w := testkit.NewWorkload(testkit.Seed(t), tables...)
			if err := w.Run(db, 2600); err != nil { // two identity modes: > 5,000 operations in all
				t.Fatal(err)
			}

			converge(t, db, p.cap.rep, 90*time.Second, "the replica to match the database", tables...)
			st := p.cap.rep.Counts()
			t.Logf("replica: %+v", st)
			if st.Gaps != 0 || st.Refetches != 0 {
				t.Errorf("with a large shadow cache no refetch or gap is expected: %+v", st)
			}
			if st.Patches == 0 || st.Deletes == 0 || st.Upserts == 0 {
				t.Errorf("workload did not exercise patches, deletes and upserts: %+v", st)
			}
		})
	}
}

// converge waits until the replica matches the tables; what says when
// (e.g. "after a server restart") in the failure, which shows the remaining
// difference.
func converge(t testing.TB, db *pgx.Conn, rep *replica.Replica, timeout time.Duration, what string, tables ...string) {
	t.Helper()
	testkit.Eventually(t, timeout, what, func() string {
		want := map[string][]byte{}
		for _, tb := range tables {
			for k, v := range testkit.DBDocs(t, db, tb, "id") {
				want[k] = v
			}
		}
		return diffReplica(t, rep, want, tenantAudience, tables...)
	})
}
