// Command pgthroughput measures the PostgreSQL pipeline (decode, route,
// diff, batch, publish) against pg_recvlogical writing the same WAL to a
// file, in the same run on the same machine, and prints the ratio.
//
//	eval "$(scripts/pg.sh start)"; go run ./bench/pgthroughput -rows 200000
//
// The target (ARCHITECTURE.md §9): changecast/pg_recvlogical ≥ 1.0.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sync/atomic"
	"time"

	"github.com/changecast/changecast/bench/internal/benchenv"
	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/changefeed/postgres"
	"github.com/changecast/changecast/publish"
)

func main() {
	rows := flag.Int("rows", 200000, "rows to insert, then update (2 changes per row)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the changecast run here")
	flag.Parse()
	ctx := context.Background()
	db := benchenv.Open()
	defer db.Close()
	url, must := db.URL, db.Must
	db.Table("bench_orders", `id int PRIMARY KEY, tenant text, status text, qty int, total numeric(10,2), note text`, "bench")
	db.Slot("bench_recv", true)
	db.Slot("bench_cc", true)

	fmt.Printf("writing %d inserts and %d updates...\n", *rows, *rows)
	for i := 0; i < *rows; i += 10000 {
		must(`INSERT INTO bench_orders SELECT g, 'tenant-' || (g % 50), 'new', g % 7, g * 1.25, 'note ' || g
			FROM generate_series($1::int, $2::int) g`, i+1, min(i+10000, *rows))
	}
	for i := 0; i < *rows; i += 10000 {
		must(`UPDATE bench_orders SET status = 'paid', qty = qty + 1 WHERE id BETWEEN $1 AND $2`, i+1, min(i+10000, *rows))
	}
	var end string
	if err := db.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&end); err != nil {
		log.Fatal(err)
	}
	changes := 2 * *rows

	// Reference: pg_recvlogical writing the pgoutput stream to a file.
	recv, err := exec.LookPath("pg_recvlogical")
	if err != nil {
		for _, c := range []string{"/usr/lib/postgresql/15/bin/pg_recvlogical", "/usr/lib/postgresql/16/bin/pg_recvlogical"} {
			if _, e := os.Stat(c); e == nil {
				recv = c
			}
		}
	}
	if recv == "" {
		log.Fatal("pg_recvlogical not found")
	}
	out := filepath.Join(os.TempDir(), "bench-recvlogical.out")
	defer os.Remove(out)
	start := time.Now()
	cmd := exec.Command(recv, "-d", url, "--slot", "bench_recv", "--start", "--no-loop", "-E", end, "-f", out,
		"-o", "proto_version=1", "-o", "publication_names=bench")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		log.Fatalf("pg_recvlogical: %v", err)
	}
	refDur := time.Since(start)

	// changecast: source → mapper → batcher → publisher (a discarding sink
	// that still encodes nothing twice: the payload is built by the batcher).
	var published atomic.Int64
	done := make(chan struct{})
	sink := publish.PublisherFunc(func(ctx context.Context, b *publish.Batch) error {
		io.Discard.Write(b.Payload)
		if published.Add(int64(len(b.Envelope.Changes))) >= int64(changes) {
			select {
			case <-done:
			default:
				close(done)
			}
		}
		return nil
	})
	quiet := benchenv.Quiet
	maps := []publish.Mapping{{Collection: "public.bench_orders", Hub: "orders", Group: "{/tenant}", Method: "changes"}}
	src := postgres.New(postgres.Config{URL: url, Slot: "bench_cc", Publication: "bench", Tables: []string{"public.bench_orders"}, Heartbeat: -1, Logger: quiet})
	proc := benchenv.Pipeline(src, maps, publish.PipelineConfig{Batch: publish.BatchLimits{MaxChanges: 500, MaxBytes: 512 << 10, MaxDelay: 10 * time.Millisecond}}, sink)
	pctx, stop := context.WithCancel(ctx)
	perr := make(chan error, 1)
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	start = time.Now()
	go func() { perr <- proc.Run(pctx) }()
	select {
	case <-done:
	case err := <-perr:
		log.Fatalf("pipeline stopped: %v", err)
	case <-time.After(10 * time.Minute):
		log.Fatalf("pipeline published %d of %d changes in 10 minutes", published.Load(), changes)
	}
	ccDur := time.Since(start)
	stop()
	<-perr
	_ = changefeed.Insert

	ref := float64(changes) / refDur.Seconds()
	cc := float64(changes) / ccDur.Seconds()
	fmt.Printf("pg_recvlogical (to a file):          %8.0f changes/s (%v)\n", ref, refDur.Round(time.Millisecond))
	fmt.Printf("changecast (decode→publish, %d groups): %8.0f changes/s (%v)\n", 50, cc, ccDur.Round(time.Millisecond))
	fmt.Printf("ratio changecast/pg_recvlogical: %.2f (target ≥ 1.00)\n", cc/ref)
}
