// Command pgthroughput measures the PostgreSQL pipeline (decode, route,
// diff, batch, publish to the in-process built-in hub, no clients) against
// pg_recvlogical writing the same WAL to a file, in the same run on the same
// machine, and prints the ratio. For each replica identity (FULL and
// DEFAULT) it writes inserts then updates of every row (about 150-byte rows,
// 50 groups), with a slot per run created before the writes: the reference
// and changecast each read the WAL -runs times (3), alternated, and the best
// run of each counts, so neither runs only on a cold cache or only in a
// noisy moment.
//
//	eval "$(scripts/pg.sh start)"; go run ./bench/pgthroughput -rows 200000
//
// The target (ARCHITECTURE.md §9): changecast/pg_recvlogical ≥ 1.0.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/changecast/changecast/bench/internal/benchenv"
	"github.com/changecast/changecast/changefeed/postgres"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/schema/config"
)

var (
	rows       = flag.Int("rows", 200000, "rows to insert, then update (2 changes per row)")
	identities = flag.String("identity", "full,default", "replica identities to measure")
	cpuprofile = flag.String("cpuprofile", "", "write a CPU profile of the changecast runs here")
	runs       = flag.Int("runs", 3, "runs of each, alternated; the best counts")
	memprofile = flag.String("memprofile", "", "write an allocation profile of the changecast runs here")
)

func main() {
	flag.Parse()
	db := benchenv.Open()
	defer db.Close()
	recv := pgRecvLogical()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if *memprofile != "" {
		runtime.MemProfileRate = 64 << 10
	}
	for _, ident := range strings.Split(*identities, ",") {
		run(db, recv, ident)
	}
	if *memprofile != "" {
		f, err := os.Create(*memprofile)
		if err != nil {
			log.Fatal(err)
		}
		pprof.Lookup("allocs").WriteTo(f, 0)
		f.Close()
	}
}

func run(db *benchenv.DB, recv, ident string) {
	ctx := context.Background()
	db.Table("bench_orders", `id int PRIMARY KEY, tenant text, status text, qty int, total numeric(10,2), note text, created timestamptz`, "bench")
	db.Must(`ALTER TABLE bench_orders REPLICA IDENTITY ` + strings.ToUpper(ident))
	for i := 1; i <= *runs; i++ {
		db.Slot(fmt.Sprintf("bench_ref%d", i), true)
		db.Slot(fmt.Sprintf("bench_cc%d", i), true)
	}
	fmt.Printf("REPLICA IDENTITY %s: writing %d inserts and %d updates...\n", strings.ToUpper(ident), *rows, *rows)
	for i := 0; i < *rows; i += 10000 {
		db.Must(`INSERT INTO bench_orders SELECT g, 'tenant-' || (g % 50), 'new', g % 7, g * 1.25,
			'note ' || g || ' ' || repeat('x', 40), '2026-11-26 16:00:00+00'::timestamptz + g * interval '1 second'
			FROM generate_series($1::int, $2::int) g`, i+1, min(i+10000, *rows))
	}
	for i := 0; i < *rows; i += 10000 {
		db.Must(`UPDATE bench_orders SET status = 'paid', qty = qty + 1 WHERE id BETWEEN $1 AND $2`, i+1, min(i+10000, *rows))
	}
	var end string
	if err := db.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&end); err != nil {
		log.Fatal(err)
	}
	changes := 2 * *rows

	// Alternated, and the best run of each counts: a shared machine's
	// noise then costs neither side more than the other.
	var refs, ccs []time.Duration
	for i := 1; i <= *runs; i++ {
		refs = append(refs, reference(db.URL, recv, fmt.Sprintf("bench_ref%d", i), end))
		ccs = append(ccs, changecast(db.URL, fmt.Sprintf("bench_cc%d", i), changes))
	}
	ref, cc := slices.Min(refs), slices.Min(ccs)
	rate := func(d time.Duration) float64 { return float64(changes) / d.Seconds() }
	rates := func(ds []time.Duration) string {
		var parts []string
		for _, d := range ds {
			parts = append(parts, fmt.Sprintf("%.0f", rate(d)))
		}
		return strings.Join(parts, " / ")
	}
	fmt.Printf("pg_recvlogical (to a file), runs: %s changes/s\n", rates(refs))
	fmt.Printf("changecast (decode→map→batch→in-process hub, 50 groups), runs: %s changes/s\n", rates(ccs))
	fmt.Printf("ratio %s changecast/pg_recvlogical: %.2f (target ≥ 1.00)\n", ident, rate(cc)/rate(ref))
}

func pgRecvLogical() string {
	if p, err := exec.LookPath("pg_recvlogical"); err == nil {
		return p
	}
	ms, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_recvlogical")
	if len(ms) == 0 {
		log.Fatal("pg_recvlogical not found")
	}
	return ms[len(ms)-1]
}

// reference times pg_recvlogical writing the slot's pgoutput stream up to
// end to a file.
func reference(url, recv, slot, end string) time.Duration {
	out := filepath.Join(os.TempDir(), "bench-recvlogical.out")
	defer os.Remove(out)
	start := time.Now()
	cmd := exec.Command(recv, "-d", url, "--slot", slot, "--start", "--no-loop", "-E", end, "-f", out,
		"-o", "proto_version=1", "-o", "publication_names=bench")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		log.Fatalf("pg_recvlogical: %v", err)
	}
	return time.Since(start)
}

// changecast times the pipeline from the source's start to the last
// change accepted by the in-process hub (which frames every batch as for
// its clients; none is connected).
func changecast(url, slot string, changes int) time.Duration {
	h, _, stopHub := benchenv.Hub()
	defer stopHub()
	hub := h.Publisher()
	var published atomic.Int64
	done := make(chan struct{})
	pub := publish.PublisherFunc(func(ctx context.Context, b *publish.Batch) error {
		if err := hub.Publish(ctx, b); err != nil {
			return err
		}
		if b.Audience.Group == "" {
			// A delete sent to the whole hub because the old values of an
			// update are not in the stream (REPLICA IDENTITY DEFAULT, a row
			// the shadow no longer holds: issue 15's route fallback), not
			// one of the stream's changes.
			return nil
		}
		if published.Add(int64(len(b.Envelope.Changes))) == int64(changes) {
			close(done)
		}
		return nil
	})
	maps := []publish.Mapping{{Collection: "public.bench_orders", Hub: "orders", Group: "{/tenant}", Method: "changes"}}
	src := postgres.New(postgres.Config{URL: url, Slot: slot, Publication: "bench", Tables: []string{"public.bench_orders"}, Heartbeat: -1, Logger: benchenv.Quiet})
	// The config file's defaults, as `changecast run` uses them.
	proc := benchenv.Pipeline(src, maps, publish.PipelineConfig{Batch: publish.BatchLimits{MaxChanges: config.DefaultMaxChanges, MaxBytes: config.DefaultMaxBytes, MaxDelay: config.DefaultMaxDelay}}, pub)
	ctx, stop := context.WithCancel(context.Background())
	perr := make(chan error, 1)
	start := time.Now()
	cpu := benchenv.CPU(os.Getpid())
	go func() { perr <- proc.Run(ctx) }()
	select {
	case <-done:
	case err := <-perr:
		log.Fatalf("pipeline stopped: %v", err)
	case <-time.After(10 * time.Minute):
		log.Fatalf("pipeline published %d of %d changes in 10 minutes", published.Load(), changes)
	}
	d := time.Since(start)
	cpuPerChange := (benchenv.CPU(os.Getpid()) - cpu) / time.Duration(changes)
	stop()
	<-perr
	// CPU per change is steadier than throughput on a shared machine.
	fmt.Printf("changecast: %v, %.1f µs of CPU per change (%.2f cores)\n", d.Round(time.Millisecond),
		float64(cpuPerChange.Nanoseconds())/1000, float64(cpuPerChange*time.Duration(changes))/float64(d))
	return d
}
