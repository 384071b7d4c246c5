package postgres_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/changecast/changecast/internal/replica"
	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/publish"
)

// workload drives random inserts, updates (of plain, NULL, large TOASTed,
// routing and key columns), deletes and multi-statement transactions (some
// rolled back) against tables created by createWorkloadTables.
type workload struct {
	rng    *rand.Rand
	tables []string
	ids    map[string][]int // live ids per table
	nextID int
}

const workloadDDL = `CREATE TABLE %s (id int PRIMARY KEY, tenant text NOT NULL, n int, note text, big text, doc jsonb)`

func createWorkloadTables(t testing.TB, db *pgx.Conn, full bool, tables ...string) {
	for _, tb := range tables {
		testkit.Exec(t, db, fmt.Sprintf(workloadDDL, tb))
		if full {
			testkit.Exec(t, db, fmt.Sprintf("ALTER TABLE %s REPLICA IDENTITY FULL", tb))
		}
	}
}

func newWorkload(seed uint64, tables ...string) *workload {
	return &workload{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), tables: tables, ids: map[string][]int{}, nextID: 1}
}

func (w *workload) bigText() any {
	switch w.rng.IntN(4) {
	case 0:
		return nil
	case 1:
		return "small " + strconv.Itoa(w.rng.IntN(1000))
	}
	b := make([]byte, 4096+w.rng.IntN(16384))
	for i := range b {
		b[i] = byte(w.rng.Uint32())
	}
	return hex.EncodeToString(b) // incompressible enough to be stored out of line
}

func (w *workload) doc() any {
	switch w.rng.IntN(5) {
	case 0:
		return nil
	case 1:
		items := make([]string, 200+w.rng.IntN(400))
		for i := range items {
			items[i] = fmt.Sprintf("%x", w.rng.Uint64())
		}
		b, _ := json.Marshal(map[string]any{"items": items, "n": w.rng.IntN(100), "deep": map[string]any{"x": w.rng.Float64()}})
		return string(b)
	}
	b, _ := json.Marshal(map[string]any{"k": w.rng.IntN(10), "s": "v" + strconv.Itoa(w.rng.IntN(5)), "nested": map[string]any{"a": []int{w.rng.IntN(3), 2}, "null": nil}})
	return string(b)
}

func (w *workload) tenant() string { return "t" + strconv.Itoa(w.rng.IntN(4)) }

func (w *workload) pick(tb string) (int, int, bool) {
	ids := w.ids[tb]
	if len(ids) == 0 {
		return 0, 0, false
	}
	i := w.rng.IntN(len(ids))
	return ids[i], i, true
}

// step runs n random statements in one transaction (committed unless
// rollback).
func (w *workload) step(db *pgx.Conn, n int, rollback bool) error {
	ctx := context.Background()
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	// Work on a copy of the id lists so a rollback forgets its changes.
	ids := map[string][]int{}
	for k, v := range w.ids {
		ids[k] = append([]int(nil), v...)
	}
	saved := w.ids
	w.ids = ids
	next := w.nextID
	for i := 0; i < n; i++ {
		tb := w.tables[w.rng.IntN(len(w.tables))]
		id, idx, ok := w.pick(tb)
		kind := w.rng.IntN(100)
		if !ok || kind < 25 {
			_, err = tx.Exec(ctx, "INSERT INTO "+tb+" VALUES ($1, $2, $3, $4, $5, $6)",
				w.nextID, w.tenant(), w.rng.IntN(1000), nullable(w, "note"), w.bigText(), w.doc())
			w.ids[tb] = append(w.ids[tb], w.nextID)
			w.nextID++
		} else {
			switch {
			case kind < 45: // plain column only: big and doc stay TOASTed ('u')
				_, err = tx.Exec(ctx, "UPDATE "+tb+" SET n = $1 WHERE id = $2", w.rng.IntN(1000), id)
			case kind < 52:
				_, err = tx.Exec(ctx, "UPDATE "+tb+" SET note = $1 WHERE id = $2", nullable(w, "note"), id)
			case kind < 60:
				_, err = tx.Exec(ctx, "UPDATE "+tb+" SET big = $1 WHERE id = $2", w.bigText(), id)
			case kind < 67:
				_, err = tx.Exec(ctx, "UPDATE "+tb+" SET doc = $1 WHERE id = $2", w.doc(), id)
			case kind < 72:
				_, err = tx.Exec(ctx, "UPDATE "+tb+" SET doc = jsonb_set(coalesce(doc, '{}'), '{k}', to_jsonb($1::int)) WHERE id = $2", w.rng.IntN(50), id)
			case kind < 80: // routing field
				_, err = tx.Exec(ctx, "UPDATE "+tb+" SET tenant = $1, n = n + 1 WHERE id = $2", w.tenant(), id)
			case kind < 86: // key change
				_, err = tx.Exec(ctx, "UPDATE "+tb+" SET id = $1 WHERE id = $2", w.nextID, id)
				w.ids[tb][idx] = w.nextID
				w.nextID++
			default:
				_, err = tx.Exec(ctx, "DELETE FROM "+tb+" WHERE id = $1", id)
				w.ids[tb] = append(w.ids[tb][:idx], w.ids[tb][idx+1:]...)
			}
		}
		if err != nil {
			tx.Rollback(ctx)
			w.ids = saved
			return err
		}
	}
	if rollback {
		w.ids, w.nextID = saved, max(next, w.nextID) // ids used in a rolled back tx are not reused
		return tx.Rollback(ctx)
	}
	if err := tx.Commit(ctx); err != nil {
		w.ids = saved
		return err
	}
	return nil
}

func nullable(w *workload, s string) any {
	if w.rng.IntN(3) == 0 {
		return nil
	}
	return s + strconv.Itoa(w.rng.IntN(100))
}

// run executes about ops statements: mostly single-statement transactions,
// some multi-statement ones, a few rolled back.
func (w *workload) run(db *pgx.Conn, ops int) error {
	for done := 0; done < ops; {
		n := 1
		if w.rng.IntN(10) == 0 {
			n = 2 + w.rng.IntN(8)
		}
		rollback := w.rng.IntN(25) == 0
		if err := w.step(db, n, rollback); err != nil {
			return err
		}
		if !rollback {
			done += n
		}
	}
	return nil
}

func tenantAudience(doc map[string]any) string { return "group:g-" + doc["tenant"].(string) }

func seed(t testing.TB) uint64 {
	s := uint64(time.Now().UnixNano())
	if v := os.Getenv("CHANGECAST_SEED"); v != "" {
		s, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("workload seed %d (set CHANGECAST_SEED to repeat)", s)
	return s
}

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
			createWorkloadTables(t, db, full, tables...)
			var maps []publish.Mapping
			for _, tb := range tables {
				maps = append(maps, publish.Mapping{Collection: tb, Hub: "h", Group: "g-{/tenant}"})
			}
			p := startPipeline(t, dbURL, pipeOpts{tables: tables, mappings: maps})
			w := newWorkload(seed(t), tables...)
			if err := w.run(db, 2600); err != nil { // two identity modes: > 5,000 operations in all
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
			for k, v := range dbDocs(t, db, tb, "id") {
				want[k] = v
			}
		}
		return diffReplica(t, rep, want, tenantAudience, tables...)
	})
}
