// Command backlog checks that memory stays bounded when the publish target
// is down: it writes a large backlog into PostgreSQL, runs the pipeline
// against a target that refuses everything for a while, samples the
// process's peak RSS, then lets the target recover and drains the backlog.
// It prints the peak RSS against the baseline RSS measured in the same run
// before the pipeline started.
//
//	eval "$(scripts/pg.sh start)"; go run ./bench/backlog -rows 1000000
//
// The target (ARCHITECTURE.md §9): peak RSS ≤ 256 MB with a 1M-change backlog.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/changecast/changecast/bench/internal/benchenv"
	"github.com/changecast/changecast/changefeed/postgres"
	"github.com/changecast/changecast/publish"
)

func rssMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func main() {
	rows := flag.Int("rows", 1000000, "backlog size (inserted rows)")
	down := flag.Duration("down", 10*time.Second, "how long the target refuses batches")
	limit := flag.Float64("limit", 256, "peak RSS limit in MB")
	flag.Parse()
	ctx := context.Background()
	db := benchenv.Open()
	defer db.Close()
	url, must := db.URL, db.Must
	db.Table("backlog", `id int PRIMARY KEY, tenant text, payload text`, "backlog")
	db.Slot("backlog", true)
	fmt.Printf("writing a backlog of %d rows...\n", *rows)
	for i := 0; i < *rows; i += 50000 {
		must(`INSERT INTO backlog SELECT g, 'tenant-' || (g % 100), repeat(md5(g::text), 4) FROM generate_series($1::int, $2::int) g`, i+1, min(i+50000, *rows))
	}
	baseline := rssMB()

	var up atomic.Bool
	var published atomic.Int64
	done := make(chan struct{})
	target := publish.PublisherFunc(func(ctx context.Context, b *publish.Batch) error {
		if !up.Load() {
			return publish.Retryable(errors.New("target down"), 0)
		}
		if published.Add(int64(len(b.Envelope.Changes))) >= int64(*rows) {
			select {
			case <-done:
			default:
				close(done)
			}
		}
		return nil
	})
	quiet := benchenv.Quiet
	src := postgres.New(postgres.Config{URL: url, Slot: "backlog", Publication: "backlog", Tables: []string{"public.backlog"}, Heartbeat: -1, Logger: quiet})
	proc := benchenv.Pipeline(src, []publish.Mapping{{Collection: "public.backlog", Hub: "h", Group: "{/tenant}", Method: "changes"}}, publish.PipelineConfig{MaxBackoff: 200 * time.Millisecond,
		Batch: publish.BatchLimits{MaxChanges: 500, MaxBytes: 512 << 10, MaxDelay: 10 * time.Millisecond}}, target)
	pctx, stop := context.WithCancel(ctx)
	perr := make(chan error, 1)
	go func() { perr <- proc.Run(pctx) }()

	peak := 0.0
	sample := time.NewTicker(50 * time.Millisecond)
	defer sample.Stop()
	recover := time.After(*down)
	start := time.Now()
loop:
	for {
		select {
		case <-sample.C:
			peak = max(peak, rssMB())
		case <-recover:
			fmt.Printf("target down for %v: peak RSS %.0f MB so far; target back up\n", *down, peak)
			up.Store(true)
		case <-done:
			break loop
		case err := <-perr:
			log.Fatalf("pipeline stopped: %v", err)
		case <-time.After(10 * time.Minute):
			log.Fatal("backlog not drained in 10 minutes")
		}
	}
	stop()
	<-perr
	fmt.Printf("drained %d changes in %v (including %v down)\n", published.Load(), time.Since(start).Round(time.Millisecond), *down)
	fmt.Printf("baseline RSS %.0f MB, peak RSS %.0f MB, limit %.0f MB: ratio peak/limit %.2f (target ≤ 1.00)\n", baseline, peak, *limit, peak / *limit)
}
