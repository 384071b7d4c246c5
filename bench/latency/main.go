// Command latency measures end to end latency, PostgreSQL commit to a
// WebSocket client of the built-in hub on loopback, at a steady change rate
// with many connected clients (the official protocol: WebSocket, JSON hub
// protocol, handshake). Latency is the receive time minus the change's
// commit time (`ts`, from the same machine's clock). A sample of clients
// decodes and times every message; all of them receive everything.
//
//	eval "$(scripts/pg.sh start)"; go run ./bench/latency -clients 1000 -rate 1000
//
// Targets (ARCHITECTURE.md §9): p50 ≤ 5 ms, p99 ≤ 25 ms at 1k changes/s with
// 1k clients; it prints each against its target as a ratio.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/changecast/changecast/bench/internal/benchenv"
	"github.com/changecast/changecast/changefeed/postgres"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/signalr"
	"github.com/changecast/changecast/schema/config"
	"github.com/changecast/changecast/schema/wire"
)

func main() {
	clients := flag.Int("clients", 1000, "WebSocket clients")
	sampled := flag.Int("sampled", 25, "clients that time every change")
	rate := flag.Int("rate", 1000, "changes per second")
	seconds := flag.Int("seconds", 5, "how long to write")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the measured run here")
	flag.Parse()
	ctx := context.Background()
	db := benchenv.Open()
	defer db.Close()
	url := db.URL
	// The walsender sends only flushed WAL: commit synchronously (the test
	// cluster defaults to synchronous_commit=off, which would add up to
	// wal_writer_delay to every change).
	db.Must(`SET synchronous_commit = on`)
	db.Table("lat_orders", `id int PRIMARY KEY, status text, n int`, "lat")
	db.Slot("lat", false) // the source creates it
	quiet := benchenv.Quiet
	h, addr, stopHub := benchenv.Hub()

	// Clients connect straight to the WebSocket with a client token
	// (skipNegotiation), do the JSON handshake and read until closed.
	endpoint := "http://" + addr
	aud := endpoint + "/client/?hub=orders"
	var (
		mu        sync.Mutex
		latencies []time.Duration
		received  atomic.Int64
		wg        sync.WaitGroup
	)
	cctx, stopClients := context.WithCancel(ctx)
	ready := make(chan struct{}, *clients)
	for i := 0; i < *clients; i++ {
		tok, err := signalr.SignAccessToken(h.AccessKey(), aud, fmt.Sprintf("u%d", i), time.Hour, time.Now())
		if err != nil {
			log.Fatal(err)
		}
		sample := i < *sampled
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _, err := websocket.Dial(cctx, "ws://"+addr+"/client/?hub=orders&access_token="+tok, nil)
			if err != nil {
				log.Printf("dial: %v", err)
				ready <- struct{}{}
				return
			}
			defer c.CloseNow()
			c.SetReadLimit(16 << 20)
			if err := c.Write(cctx, websocket.MessageText, []byte("{\"protocol\":\"json\",\"version\":1}\x1e")); err != nil {
				ready <- struct{}{}
				return
			}
			first := true
			for {
				_, data, err := c.Read(cctx)
				if err != nil {
					return
				}
				now := time.Now()
				if first {
					first = false
					ready <- struct{}{}
				}
				for _, rec := range bytes.Split(data, []byte{0x1e}) {
					if len(rec) == 0 || !bytes.Contains(rec, []byte(`"target":"changes"`)) {
						continue
					}
					var inv struct {
						Arguments []wire.Envelope `json:"arguments"`
					}
					if !sample {
						received.Add(int64(bytes.Count(rec, []byte(`"op":`))))
						continue
					}
					if json.Unmarshal(rec, &inv) != nil || len(inv.Arguments) == 0 {
						continue
					}
					var ls []time.Duration
					for _, ch := range inv.Arguments[0].Changes {
						if ts, err := time.Parse(time.RFC3339Nano, ch.TS); err == nil {
							ls = append(ls, now.Sub(ts))
						}
					}
					received.Add(int64(len(ls)))
					mu.Lock()
					latencies = append(latencies, ls...)
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < *clients; i++ {
		<-ready // the handshake answer arrived
	}

	src := postgres.New(postgres.Config{URL: url, Slot: "lat", Publication: "lat", Tables: []string{"public.lat_orders"}, Heartbeat: -1, Logger: quiet})
	proc := benchenv.Pipeline(src, []publish.Mapping{{Collection: "public.lat_orders", Hub: "orders", Method: "changes"}}, publish.PipelineConfig{Batch: publish.BatchLimits{MaxChanges: config.DefaultMaxChanges, MaxBytes: config.DefaultMaxBytes, MaxDelay: config.DefaultMaxDelay}}, h.Publisher())
	pctx, stop := context.WithCancel(ctx)
	perr := make(chan error, 1)
	go func() { perr <- proc.Run(pctx) }()
	for !src.Ready() {
		time.Sleep(10 * time.Millisecond)
	}

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	total := *rate * *seconds
	start := time.Now()
	for i := 0; i < total; i++ {
		if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(*rate))); d > 0 {
			time.Sleep(d)
		}
		if _, err := db.Exec(ctx, `INSERT INTO lat_orders VALUES ($1, 'new', 0) ON CONFLICT (id) DO UPDATE SET n = lat_orders.n + 1, status = 'paid'`, i%2000); err != nil {
			log.Fatal(err)
		}
	}
	wrote := time.Since(start)
	want := int64(total) * int64(*clients)
	for deadline := time.Now().Add(30 * time.Second); received.Load() < want && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	<-perr
	stopClients()
	wg.Wait()
	stopHub()

	mu.Lock()
	slices.Sort(latencies)
	n := len(latencies)
	mu.Unlock()
	if n == 0 {
		log.Fatal("no latencies recorded")
	}
	pct := func(p float64) time.Duration { return latencies[min(n-1, int(float64(n)*p))] }
	p50, p99 := pct(0.50), pct(0.99)
	fmt.Printf("%d changes at %.0f/s to %d clients: %d of %d deliveries received (%d timed)\n",
		total, float64(total)/wrote.Seconds(), *clients, received.Load(), want, n)
	fmt.Printf("latency commit→client: p50 %v, p90 %v, p99 %v, max %v\n", p50.Round(10*time.Microsecond), pct(0.90).Round(10*time.Microsecond), p99.Round(10*time.Microsecond), latencies[n-1].Round(time.Microsecond))
	fmt.Printf("ratio p50/5ms: %.2f, p99/25ms: %.2f (targets ≤ 1.00)\n", p50.Seconds()/0.005, p99.Seconds()/0.025)
}
