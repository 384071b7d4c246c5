package testkit

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
)

// Workload drives random inserts, updates (of plain, NULL, large TOASTed,
// routing and key columns), deletes and multi-statement transactions (some
// rolled back) against tables created by CreateWorkloadTables.
type Workload struct {
	rng    *rand.Rand
	tables []string
	ids    map[string][]int // live ids per table
	nextID int
}

// WorkloadDDL is the table a Workload writes: a routing field (tenant), a
// nullable text, a large TOASTed text and a jsonb.
const WorkloadDDL = `CREATE TABLE %s (id int PRIMARY KEY, tenant text NOT NULL, n int, note text, big text, doc jsonb)`

// CreateWorkloadTables creates the tables, with REPLICA IDENTITY FULL when
// full.
func CreateWorkloadTables(t testing.TB, db *pgx.Conn, full bool, tables ...string) {
	for _, tb := range tables {
		Exec(t, db, fmt.Sprintf(WorkloadDDL, tb))
		if full {
			Exec(t, db, fmt.Sprintf("ALTER TABLE %s REPLICA IDENTITY FULL", tb))
		}
	}
}

// NewWorkload returns a workload over tables, repeatable from seed.
func NewWorkload(seed uint64, tables ...string) *Workload {
	return &Workload{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), tables: tables, ids: map[string][]int{}, nextID: 1}
}

// Adopt makes rows written outside the workload (ids) its own: later steps
// update, move and delete them too.
func (w *Workload) Adopt(tb string, ids ...int) {
	w.ids[tb] = append(w.ids[tb], ids...)
	for _, id := range ids {
		w.nextID = max(w.nextID, id+1)
	}
}

func (w *Workload) bigText() any {
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

func (w *Workload) doc() any {
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

func (w *Workload) tenant() string { return "t" + strconv.Itoa(w.rng.IntN(4)) }

func (w *Workload) pick(tb string) (int, int, bool) {
	ids := w.ids[tb]
	if len(ids) == 0 {
		return 0, 0, false
	}
	i := w.rng.IntN(len(ids))
	return ids[i], i, true
}

// Step runs n random statements in one transaction (committed unless
// rollback).
func (w *Workload) Step(db *pgx.Conn, n int, rollback bool) error {
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

func nullable(w *Workload, s string) any {
	if w.rng.IntN(3) == 0 {
		return nil
	}
	return s + strconv.Itoa(w.rng.IntN(100))
}

// Run executes about ops statements: mostly single-statement transactions,
// some multi-statement ones, a few rolled back.
func (w *Workload) Run(db *pgx.Conn, ops int) error {
	for done := 0; done < ops; {
		n := 1
		if w.rng.IntN(10) == 0 {
			n = 2 + w.rng.IntN(8)
		}
		rollback := w.rng.IntN(25) == 0
		if err := w.Step(db, n, rollback); err != nil {
			return err
		}
		if !rollback {
			done += n
		}
	}
	return nil
}

// Seed is a random seed, or CHANGECAST_SEED when set; it logs it so a
// failing run can be repeated.
func Seed(t testing.TB) uint64 {
	s := uint64(time.Now().UnixNano())
	if v := os.Getenv("CHANGECAST_SEED"); v != "" {
		s, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("workload seed %d (set CHANGECAST_SEED to repeat)", s)
	return s
}
