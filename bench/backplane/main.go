// Command backplane measures what the Redis backplane costs and gives: the
// built-in hub's fan-out to N WebSocket clients spread over 3 nodes joined
// by Redis against the same clients on 1 node, and the latency a send
// gains when it crosses Redis to reach clients on the other nodes (p50 and
// p99 against 1 node). Everything runs on this machine in this process, so
// the 3 nodes share its cores: the ratio shows the backplane's overhead,
// not the capacity more machines would add.
//
//	eval "$(scripts/redis.sh start)"; go run ./bench/backplane -clients 5000
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/hub"
	"github.com/changecast/changecast/publish/signalr"
)

var (
	clients     = flag.Int("clients", 5000, "WebSocket clients of the fan-out run")
	messages    = flag.Int("messages", 50, "broadcasts of the fan-out run")
	latClients  = flag.Int("latency-clients", 300, "clients of the latency run")
	latMessages = flag.Int("latency-messages", 300, "sends of the latency run, 5 ms apart")
	runs        = flag.Int("runs", 3, "runs of each setup, alternating; the best fan-out and the median latencies count")
)

func main() {
	flag.Parse()
	redisURL := os.Getenv("CHANGECAST_REDIS_URL")
	if redisURL == "" {
		log.Fatal(`CHANGECAST_REDIS_URL is not set: eval "$(scripts/redis.sh start)" first`)
	}
	// Alternate the setups and keep each one's best run: the first runs
	// of a process pay for its warm-up, and the machine is shared.
	var one, three float64
	for range *runs {
		one = max(one, fanout(redisURL, 1))
		three = max(three, fanout(redisURL, 3))
	}
	fmt.Printf("fan-out, %d clients × %d broadcasts (best of %d runs; %d cores, all nodes in this process):\n", *clients, *messages, *runs, runtime.NumCPU())
	fmt.Printf("  1 node:                 %9.0f deliveries/s\n", one)
	fmt.Printf("  3 nodes, Redis backplane: %7.0f deliveries/s\n", three)
	fmt.Printf("  ratio 3 nodes / 1 node: %.2f (all nodes share these %d cores: the ratio weighs the Redis hop against\n"+
		"  spreading the fan-out over more goroutines; it is not the capacity separate machines would add)\n", three/one, runtime.NumCPU())

	var r1, r3 []percentiles
	for range *runs {
		r1 = append(r1, latency(redisURL, 1))
		r3 = append(r3, latency(redisURL, 3))
	}
	l1, l3 := median(r1), median(r3)
	fmt.Printf("latency, %d clients, %d sends through node 1 (median of %d runs):\n", *latClients, *latMessages, *runs)
	fmt.Printf("  1 node:   p50 %v  p99 %v\n", l1.p50, l1.p99)
	fmt.Printf("  3 nodes:  p50 %v  p99 %v  (2 of 3 clients behind Redis)\n", l3.p50, l3.p99)
	fmt.Printf("  added by the backplane: p50 %+v, p99 %+v; ratio p50 %.2f, p99 %.2f\n",
		l3.p50-l1.p50, l3.p99-l1.p99, float64(l3.p50)/float64(l1.p50), float64(l3.p99)/float64(l1.p99))
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type node struct {
	h    *hub.Server
	addr string
	stop func()
}

// cluster starts n nodes serving hub orders; with n > 1 they share Redis
// under a prefix of their own.
func cluster(redisURL string, n int) []*node {
	key := hub.NewAccessKey()
	prefix := "bench:" + strconv.FormatInt(time.Now().UnixNano(), 36)
	var out []*node
	for range n {
		cfg := hub.Config{Hubs: []string{"orders"}, AccessKey: key, Negotiate: hub.NegotiateConfig{Auth: hub.NegotiateAuth{Anonymous: true}},
			Limits: hub.Limits{MaxConnections: 1_000_000, MaxConnectionsPerUser: 1_000_000}}
		if n > 1 {
			cfg.Backplane = &hub.Backplane{RedisURL: redisURL, Prefix: prefix}
		}
		h, err := hub.New(cfg, hub.WithLogger(quiet))
		if err != nil {
			log.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- h.Serve(ctx, ln) }()
		<-h.Listening()
		out = append(out, &node{h: h, addr: ln.Addr().String(), stop: func() { cancel(); <-done }})
	}
	return out
}

// dial connects count clients, client i to node i mod len(nodes) (with a
// client token, skipping negotiation), and calls onRecord for every record
// each gets after its handshake. It returns once all are connected; stop
// closes them.
func dial(nodes []*node, count int, onRecord func(rec []byte, at time.Time)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	ready := make(chan struct{}, count)
	sem := make(chan struct{}, 200) // connect at most this many at once
	for i := range count {
		n := nodes[i%len(nodes)]
		tok, err := signalr.SignAccessToken(n.h.AccessKey(), "http://"+n.addr+"/client/?hub=orders", "u"+strconv.Itoa(i), time.Hour, time.Now())
		if err != nil {
			log.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			c, _, err := websocket.Dial(ctx, "ws://"+n.addr+"/client/?hub=orders&access_token="+tok, nil)
			if err == nil {
				err = c.Write(ctx, websocket.MessageText, []byte("{\"protocol\":\"json\",\"version\":1}\x1e"))
			}
			<-sem
			if err != nil {
				log.Fatalf("client: %v", err)
			}
			defer c.CloseNow()
			c.SetReadLimit(16 << 20)
			first := true
			for {
				_, data, err := c.Read(ctx)
				if err != nil {
					return
				}
				at := time.Now()
				for _, rec := range bytes.Split(data, []byte{0x1e}) {
					if first && len(rec) > 0 {
						first = false // the handshake answer
						ready <- struct{}{}
						continue
					}
					if bytes.Contains(rec, []byte(`"target":"changes"`)) {
						onRecord(rec, at)
					}
				}
			}
		}()
	}
	for range count {
		<-ready
	}
	return func() { cancel(); wg.Wait() }
}

func publishTo(h *hub.Server, payload []byte) {
	b := &publish.Batch{Audience: publish.Audience{Hub: "orders", Method: "changes"}, Payload: payload}
	if err := h.Publisher().Publish(context.Background(), b); err != nil {
		log.Fatal(err)
	}
}

// fanout returns deliveries per second of broadcasts to *clients over n
// nodes, published through node 1.
func fanout(redisURL string, n int) float64 {
	nodes := cluster(redisURL, n)
	defer func() {
		for _, nd := range nodes {
			nd.stop()
		}
	}()
	var got atomic.Int64
	stop := dial(nodes, *clients, func([]byte, time.Time) { got.Add(1) })
	defer stop()
	time.Sleep(500 * time.Millisecond) // every node has seen its clients' presence
	want := int64(*clients) * int64(*messages)
	doc := fmt.Sprintf(`{"source":"bench","hub":"orders","changes":[{"op":"upsert","collection":"public.orders","id":"1","v":"1.1","doc":{"note":"%s"}}]}`, bytes.Repeat([]byte("x"), 300))
	start := time.Now()
	for range *messages {
		publishTo(nodes[0].h, []byte(doc))
	}
	deadline := time.Now().Add(2 * time.Minute)
	for got.Load() < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got.Load() < want {
		log.Printf("%d nodes: only %d of %d delivered in 2 minutes", n, got.Load(), want)
	}
	return float64(got.Load()) / time.Since(start).Seconds()
}

type percentiles struct{ p50, p99 time.Duration }

// median takes the median p50 and the median p99 of runs.
func median(runs []percentiles) percentiles {
	var p50, p99 []time.Duration
	for _, r := range runs {
		p50, p99 = append(p50, r.p50), append(p99, r.p99)
	}
	slices.Sort(p50)
	slices.Sort(p99)
	return percentiles{p50[len(p50)/2], p99[len(p99)/2]}
}

// latency sends *latMessages messages through node 1, each carrying its
// send time, to *latClients clients over n nodes.
func latency(redisURL string, n int) percentiles {
	nodes := cluster(redisURL, n)
	defer func() {
		for _, nd := range nodes {
			nd.stop()
		}
	}()
	var mu sync.Mutex
	var lat []time.Duration
	var got atomic.Int64
	stop := dial(nodes, *latClients, func(rec []byte, at time.Time) {
		i := bytes.Index(rec, []byte(`"t":`))
		if i < 0 {
			return
		}
		j := bytes.IndexByte(rec[i+4:], '}')
		ns, err := strconv.ParseInt(string(rec[i+4:i+4+j]), 10, 64)
		if err != nil {
			return
		}
		mu.Lock()
		lat = append(lat, at.Sub(time.Unix(0, ns)))
		mu.Unlock()
		got.Add(1)
	})
	defer stop()
	time.Sleep(500 * time.Millisecond)
	for range *latMessages {
		publishTo(nodes[0].h, fmt.Appendf(nil, `{"t":%d}`, time.Now().UnixNano()))
		time.Sleep(5 * time.Millisecond)
	}
	want := int64(*latClients) * int64(*latMessages)
	deadline := time.Now().Add(time.Minute)
	for got.Load() < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lat)
	if len(lat) == 0 {
		log.Fatal("no deliveries")
	}
	return percentiles{p50: lat[len(lat)/2].Round(time.Microsecond), p99: lat[len(lat)*99/100].Round(time.Microsecond)}
}
