// Command restcalls measures how many Azure SignalR REST calls the pipeline
// makes: PostgreSQL changes at a steady rate across many groups, published
// by the REST publisher (the code that targets Azure) to the built-in hub,
// counted at the HTTP transport. The reference, measured in the same run, is
// one call per change (what a Functions output binding does).
//
//	eval "$(scripts/pg.sh start)"; go run ./bench/restcalls
//
// The target (ARCHITECTURE.md §9): ≥ 50× fewer calls than one per change.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/changecast/changecast/bench/internal/benchenv"
	"github.com/changecast/changecast/changefeed/postgres"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/signalr"
	"github.com/changecast/changecast/schema/config"
)

type counting struct {
	calls atomic.Int64
	next  http.RoundTripper
}

func (c *counting) RoundTrip(r *http.Request) (*http.Response, error) {
	c.calls.Add(1)
	return c.next.RoundTrip(r)
}

func main() {
	rate := flag.Int("rate", 5000, "changes per second written")
	seconds := flag.Int("seconds", 4, "how long to write")
	groups := flag.Int("groups", 10, "tenants (groups)")
	delay := flag.Duration("maxDelay", config.DefaultSignalRMaxDelay, "linger of an idle audience (publish.batch.maxDelay; the signalr target's default)")
	flag.Parse()
	ctx := context.Background()
	db := benchenv.Open()
	defer db.Close()
	url := db.URL
	db.Table("rest_orders", `id int PRIMARY KEY, tenant text, n int`, "rest")
	db.Slot("rest", false) // the source creates it
	quiet := benchenv.Quiet
	h, _, stopHub := benchenv.Hub()
	tr := &counting{next: http.DefaultTransport}
	pub, err := signalr.New(h.ConnectionString(), signalr.WithHTTPClient(&http.Client{Transport: tr}))
	if err != nil {
		log.Fatal(err)
	}
	var published atomic.Int64
	counted := publish.PublisherFunc(func(ctx context.Context, b *publish.Batch) error {
		err := pub.Publish(ctx, b)
		if err == nil {
			published.Add(int64(len(b.Envelope.Changes)))
		}
		return err
	})
	src := postgres.New(postgres.Config{URL: url, Slot: "rest", Publication: "rest", Tables: []string{"public.rest_orders"}, Heartbeat: -1, Logger: quiet})
	proc := benchenv.Pipeline(src, []publish.Mapping{{Collection: "public.rest_orders", Hub: "orders", Group: "tenant-{/tenant}", Method: "changes"}}, publish.PipelineConfig{Batch: publish.BatchLimits{MaxChanges: config.DefaultMaxChanges, MaxBytes: config.DefaultMaxBytes, MaxDelay: *delay}}, counted)
	pctx, stop := context.WithCancel(ctx)
	perr := make(chan error, 1)
	go func() { perr <- proc.Run(pctx) }()
	for !src.Ready() {
		time.Sleep(10 * time.Millisecond)
	}

	// Write at a steady rate: one single-row transaction per change, as an
	// application would.
	total := *rate * *seconds
	start := time.Now()
	for i := 0; i < total; i++ {
		if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(*rate))); d > 0 {
			time.Sleep(d)
		}
		if _, err := db.Exec(ctx, `INSERT INTO rest_orders VALUES ($1, $2, 0) ON CONFLICT (id) DO UPDATE SET n = rest_orders.n + 1`,
			i%5000, fmt.Sprintf("t%d", i%*groups)); err != nil {
			log.Fatal(err)
		}
	}
	wrote := time.Since(start)
	for deadline := time.Now().Add(time.Minute); published.Load() < int64(total) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	<-perr
	stopHub()
	calls := tr.calls.Load()
	fmt.Printf("%d changes written in %v (%.0f/s) across %d groups, linger (maxDelay) %v; %d published\n", total, wrote.Round(time.Millisecond), float64(total)/wrote.Seconds(), *groups, *delay, published.Load())
	fmt.Printf("REST calls: %d (reference, one per change: %d)\n", calls, total)
	fmt.Printf("ratio reference/changecast calls: %.1f (target ≥ 50)\n", float64(total)/float64(max(calls, 1)))
}
