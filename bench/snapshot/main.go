// Command snapshot measures what a client's first load costs: a group of
// -docs documents read through changecast's GET {negotiate}/snapshot (every
// page, as @changecast/client reads it), against a bare SELECT of the same
// rows as JSON (row_to_json over the same predicate, read whole by pgx) in
// the same run. The two are alternated, -rounds times each, and the best
// of each is compared: the ratio is the snapshot's overhead (watermarks,
// the stream round trip, projection and encoding, HTTP).
//
//	eval "$(scripts/pg.sh start)"; go run ./bench/snapshot
//
// Target (issue 9): ratio ≤ 2.0 for 10k documents.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime/pprof"
	"time"

	"github.com/changecast/changecast/bench/internal/benchenv"
)

func main() {
	docs := flag.Int("docs", 10000, "documents in the group (another group of as many shares the table)")
	rounds := flag.Int("rounds", 15, "measurements of each, alternated; the best counts")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the measured rounds (the worker runs in this process)")
	flag.Parse()
	ctx := context.Background()

	db := benchenv.Open()
	defer db.Close()
	db.Table("public.bench_snapshot", `id bigint PRIMARY KEY, tenant text NOT NULL, item text NOT NULL,
		qty int NOT NULL, total numeric(12,2) NOT NULL, status text NOT NULL, tags text[],
		updated_at timestamptz NOT NULL DEFAULT now()`, "bench_snapshot")
	// Two tenants, interleaved: the snapshot's predicate has to pick its own.
	db.Must(`INSERT INTO bench_snapshot (id, tenant, item, qty, total, status, tags)
		SELECT i, CASE WHEN i % 2 = 0 THEN 'acme' ELSE 'globex' END, 'item ' || i, i % 97, (i % 1000) * 1.25,
		       'open', ARRAY['a', 'b' || (i % 7)]
		FROM generate_series(1, $1::int * 2) i`, *docs)
	db.Must(`ANALYZE bench_snapshot`)
	db.Slot("bench_snapshot", false)
	w := db.StartWorker("public.bench_snapshot", "bench_snapshot", "bench_snapshot", "")
	defer w.Stop()

	selectRows := func() (int, int64) {
		rows, err := db.Query(ctx, `SELECT row_to_json(t)::text FROM bench_snapshot t WHERE tenant = 'acme' ORDER BY id`)
		if err != nil {
			log.Fatal(err)
		}
		defer rows.Close()
		n, size := 0, int64(0)
		for rows.Next() {
			var b []byte
			if err := rows.Scan(&b); err != nil {
				log.Fatal(err)
			}
			var doc map[string]any
			if err := json.Unmarshal(b, &doc); err != nil {
				log.Fatal(err)
			}
			n++
			size += int64(len(b))
		}
		if err := rows.Err(); err != nil {
			log.Fatal(err)
		}
		return n, size
	}
	snapshot := func() (int, int64) { return w.Snapshot("acme", "tenant-acme") }

	best := func(d *time.Duration, f func() (int, int64)) (int, int64) {
		start := time.Now()
		n, size := f()
		if e := time.Since(start); *d == 0 || e < *d {
			*d = e
		}
		return n, size
	}
	// One of each first, unmeasured: connections, plans, caches.
	selectRows()
	snapshot()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	var tSelect, tSnap time.Duration
	var nSelect, nSnap int
	var bSelect, bSnap int64
	for range *rounds {
		nSelect, bSelect = best(&tSelect, selectRows)
		nSnap, bSnap = best(&tSnap, snapshot)
	}
	if nSelect != *docs || nSnap != *docs {
		log.Fatalf("read %d documents by SELECT and %d by snapshot, want %d each", nSelect, nSnap, *docs)
	}
	fmt.Printf("SELECT row_to_json:  %d docs, %.1f MB in %v (%.0f docs/s)\n", nSelect, float64(bSelect)/1e6, tSelect.Round(time.Millisecond), float64(nSelect)/tSelect.Seconds())
	fmt.Printf("GET /snapshot:       %d docs, %.1f MB in %v (%.0f docs/s, pages of 1000)\n", nSnap, float64(bSnap)/1e6, tSnap.Round(time.Millisecond), float64(nSnap)/tSnap.Seconds())
	fmt.Printf("ratio snapshot/select: %.2f (target ≤ 2.0; best of %d each, alternated)\n", tSnap.Seconds()/tSelect.Seconds(), *rounds)
}
