// Command latprobe splits bench/latency's figure: it times PostgreSQL
// commit → the built-in hub's publish call, in process (the source, the
// processor, the mapper and the batcher, with the config's defaults), at a
// steady rate of single-row transactions spread over groups. What bench/latency
// measures beyond this is the hub's delivery to the clients and the clients.
//
//	eval "$(scripts/pg.sh start)"; go run ./bench/latprobe -rate 1000 -seconds 5
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"slices"
	"sync"
	"time"

	"github.com/changecast/changecast/bench/internal/benchenv"
	"github.com/changecast/changecast/changefeed/postgres"
	"github.com/changecast/changecast/publish"
)

func main() {
	rate := flag.Int("rate", 1000, "changes per second")
	seconds := flag.Float64("seconds", 5, "how long to write")
	groups := flag.Int("groups", 100, "groups")
	flag.Parse()
	db := benchenv.Open()
	defer db.Close()
	// The walsender sends only flushed WAL: commit synchronously.
	db.Must(`SET synchronous_commit = on`)
	db.Table("probe_orders", `id int PRIMARY KEY, g text, status text, n int`, "probe")
	db.Slot("probe", false) // the source creates it
	h, _, stop := benchenv.Hub()
	defer stop()
	hub := h.Publisher()
	var mu sync.Mutex
	var lat []time.Duration
	pub := publish.PublisherFunc(func(ctx context.Context, b *publish.Batch) error {
		now := time.Now()
		mu.Lock()
		for _, c := range b.Envelope.Changes {
			if ts, err := time.Parse(time.RFC3339Nano, c.TS); err == nil {
				lat = append(lat, now.Sub(ts))
			}
		}
		mu.Unlock()
		return hub.Publish(ctx, b)
	})
	src := postgres.New(postgres.Config{URL: db.URL, Slot: "probe", Publication: "probe", Tables: []string{"public.probe_orders"}, Heartbeat: -1, Logger: benchenv.Quiet})
	proc := benchenv.Pipeline(src, []publish.Mapping{{Collection: "public.probe_orders", Hub: "orders", Group: "{/g}", Method: "changes"}}, publish.PipelineConfig{}, pub)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- proc.Run(ctx) }()
	for !src.Ready() {
		time.Sleep(10 * time.Millisecond)
	}
	total := int(float64(*rate) * *seconds)
	start := time.Now()
	for i := 0; i < total; i++ {
		if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(*rate))); d > 0 {
			time.Sleep(d)
		}
		if _, err := db.Exec(ctx, `INSERT INTO probe_orders VALUES ($1, $2, 'new', 0) ON CONFLICT (id) DO UPDATE SET n = probe_orders.n + 1`,
			i%2000, fmt.Sprint(i%*groups)); err != nil {
			log.Fatal(err)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(lat)
		mu.Unlock()
		if n >= total {
			break
		}
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(lat) == 0 {
		log.Fatal("nothing published")
	}
	slices.Sort(lat)
	n := len(lat)
	p := func(q float64) time.Duration { return lat[min(n-1, int(float64(n)*q))] }
	fmt.Printf("%d changes at %d/s: commit → hub publish p50 %v, p90 %v, p99 %v, max %v\n", n, *rate,
		p(.5).Round(time.Microsecond), p(.9).Round(time.Microsecond), p(.99).Round(time.Microsecond), lat[n-1].Round(time.Microsecond))
	fmt.Printf("ratio p99 commit→publish / 15 ms (the grouped p99 target, of which it is a part): %.3f\n", p(.99).Seconds()/0.015)
}
