// Command fanout races changecast's built-in hub against the Centrifugo
// v6.9.1 server, each deployed as a user would: its own process on
// loopback (pinned to one core), published to over its HTTP API (the hub's
// Azure-compatible REST API, Centrifugo's /api/publish), with the same
// out-of-process clients (bench/loadclient, pinned to the other core with
// the publisher) that decode every message the same way. Messages are one
// change of about 400 bytes; N clients in G groups (channels).
//
// Two phases per server:
//   - latency: a steady rate of messages (-rate, spread over the groups);
//     p50/p99 from publish to client;
//   - throughput: -messages published as fast as the server takes them
//     (-publishers concurrent callers); deliveries/s from the first publish
//     to the last delivery.
//
// It prints each figure and the ratios changecast/Centrifugo: throughput,
// p99 at the fixed rate, server CPU per delivery in both phases, and the
// servers' peak RSS. Targets (ARCHITECTURE.md §9, issue 20): throughput
// ≥ 1.0, p99 ≤ 1.0, CPU per delivery ≤ 0.9, peak RSS ≤ 0.5. -runs N
// alternates which server goes first; scripts/bench.sh runs 2,000 and
// 10,000 clients at 20,000 deliveries/s.
//
//	go run . -clients 10000 -groups 50 -rate 100 -runs 3     (from bench/fanout)
//
// Centrifugo is built once into ~/.cache/changecast-bench (go install, a
// few minutes) when it is missing. It is its own module so the main one
// never depends on anything of Centrifugo's.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/changecast/changecast/bench/internal/benchenv"
	"github.com/changecast/changecast/bench/internal/centrifugo"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/signalr"
	"github.com/changecast/changecast/schema/wire"
)

var (
	clients    = flag.Int("clients", 5000, "WebSocket clients")
	groups     = flag.Int("groups", 50, "groups (Centrifugo channels); client i is in group i mod groups")
	messages   = flag.Int("messages", 4000, "messages published in the throughput phase")
	rate       = flag.Int("rate", 200, "messages per second in the latency phase")
	seconds    = flag.Float64("seconds", 5, "length of the latency phase")
	publishers = flag.Int("publishers", 4, "concurrent publish calls in the throughput phase")
	hubProfile = flag.String("hubprofile", "", "profile the hub instead of racing: run it in this process (REST API on loopback as usual) and write a CPU profile of its throughput phase here")
	profPhase  = flag.String("hubprofile-phase", "throughput", "the phase -hubprofile profiles: throughput or latency")
	runs       = flag.Int("runs", 1, "races of each server, alternated (Centrifugo first in odd runs, the hub first in even ones); every run's ratios are printed")
)

// server is one system under test, seen through its HTTP API.
type server struct {
	name    string
	pid     int
	load    benchenv.LoadConfig
	publish func(ctx context.Context, group string, env []byte) error
	stop    func()
	start   func(phase string) // optional, when a phase ("latency", "throughput") starts
}

// envelope is one message: a batch envelope holding one change of about
// 400 bytes, stamped with the time it is published.
func envelope(i, groups int) (group string, b []byte) {
	group = fmt.Sprintf("g%d", i%groups)
	doc := fmt.Sprintf(`{"id":%d,"status":"shipped","customer":"Grace Hopper","items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}],"note":"%s"}`, i, strings.Repeat("x", 160))
	e := wire.Entry{Op: wire.OpUpsert, Collection: "public.orders", ID: fmt.Sprint(i), V: fmt.Sprintf("%d.1", 1000+i),
		Doc: json.RawMessage(doc), TS: time.Now().UTC().Format(time.RFC3339Nano)}
	b, _ = json.Marshal(wire.Envelope{Source: "bench", Hub: "orders", Group: group, Changes: []wire.Entry{e}})
	return group, b
}

type result struct {
	cpu           float64 // server CPU µs per delivery, throughput phase
	latCPU        float64 // server CPU µs per delivery, latency phase (fixed rate)
	rate          float64 // deliveries/s, throughput phase
	p50, p99, max int64   // µs, latency phase
	delivered     int64
	rss           int64 // the server's peak resident set, bytes
}

func main() {
	flag.Parse()
	if *hubProfile != "" {
		profileHub()
		return
	}
	benchenv.PinSelf()
	if _, b := envelope(0, 1); true {
		fmt.Printf("%d clients in %d groups, messages of %d bytes; latency at %d msg/s (%d deliveries/s) for %.0fs, throughput over %d messages; pinned: %v\n",
			*clients, *groups, len(b), *rate, *rate**clients / *groups, *seconds, *messages, benchenv.Pinned())
	}
	for run := 1; run <= *runs; run++ {
		var cent, hub result
		if run%2 == 1 {
			cent, hub = race(startCentrifugo()), race(startHub())
		} else {
			hub, cent = race(startHub()), race(startCentrifugo())
		}
		if *runs > 1 {
			fmt.Printf("-- run %d of %d\n", run, *runs)
		}
		fmt.Printf("Centrifugo %s:        %9.0f deliveries/s, p50 %s, p99 %s, peak RSS %.1f MB\n", centrifugo.Version, cent.rate, benchenv.Ms(cent.p50), benchenv.Ms(cent.p99), mb(cent.rss))
		fmt.Printf("changecast built-in hub: %9.0f deliveries/s, p50 %s, p99 %s, peak RSS %.1f MB\n", hub.rate, benchenv.Ms(hub.p50), benchenv.Ms(hub.p99), mb(hub.rss))
		fmt.Printf("ratio throughput changecast/Centrifugo: %.2f (target ≥ 1.00)\n", hub.rate/cent.rate)
		fmt.Printf("ratio p99 changecast/Centrifugo: %.2f (target ≤ 1.00)\n", float64(hub.p99)/float64(max(cent.p99, 1)))
		// Steadier than deliveries/s on a shared machine, and what bounds
		// them once a server's core is saturated.
		fmt.Printf("ratio server CPU per delivery changecast/Centrifugo: %.2f at the fixed rate, %.2f at saturation (target ≤ 0.90; throughput at saturation is its inverse)\n", hub.latCPU/cent.latCPU, hub.cpu/cent.cpu)
		fmt.Printf("ratio server peak RSS changecast/Centrifugo: %.2f (target ≤ 0.50)\n", float64(hub.rss)/float64(max(cent.rss, 1)))
	}
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// profileHub runs the hub's fan-out in this process (its REST API on
// loopback, the same out-of-process clients) and profiles the throughput
// phase: where a delivery's server CPU goes. Not a measurement.
func profileHub() {
	h, addr, stop := benchenv.Hub()
	key := h.AccessKey()
	pub, err := signalr.New(h.ConnectionString(), signalr.WithHTTPClient(&http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}))
	if err != nil {
		log.Fatal(err)
	}
	for i := 0; i < *clients; i++ {
		if err := pub.Client().AddUserToGroup(context.Background(), "orders", fmt.Sprintf("g%d", i%*groups), fmt.Sprintf("u%d", i), 0); err != nil {
			log.Fatal(err)
		}
	}
	f, err := os.Create(*hubProfile)
	if err != nil {
		log.Fatal(err)
	}
	if *profPhase != "latency" {
		*seconds = 0.1
	}
	race(server{name: "changecast (in-process, profiled)", pid: os.Getpid(),
		load: benchenv.LoadConfig{Proto: "signalr", URL: "ws://" + addr + "/client/?hub=orders", Key: key, Clients: *clients},
		publish: func(ctx context.Context, group string, env []byte) error {
			return pub.Publish(ctx, &publish.Batch{Audience: publish.Audience{Hub: "orders", Group: group, Method: "changes"}, Payload: env})
		},
		stop: stop,
		start: func(phase string) {
			if phase == *profPhase {
				pprof.StartCPUProfile(f)
			} else {
				pprof.StopCPUProfile()
			}
			// What the latency phase allocates: the allocs profile at its
			// start and at its end (go tool pprof -diff_base FILE.allocs.0 FILE.allocs.1).
			if af, err := os.Create(fmt.Sprintf("%s.allocs.%d", *hubProfile, map[string]int{"latency": 0, "throughput": 1}[phase])); err == nil {
				runtime.GC()
				pprof.Lookup("allocs").WriteTo(af, 0)
				af.Close()
			}
		},
	})
	pprof.StopCPUProfile()
	f.Close()
}

func race(s server) result {
	defer s.stop()
	load := benchenv.StartLoad(s.load)
	defer load.Stop()
	perGroup := int64(*clients / *groups)
	ctx := context.Background()

	// Warm up: a few messages to every group.
	for i := 0; i < 2**groups; i++ {
		g, b := envelope(i, *groups)
		if err := s.publish(ctx, g, b); err != nil {
			log.Fatalf("%s: publish: %v", s.name, err)
		}
	}
	load.WaitFor(2*int64(*clients), 30*time.Second)
	load.Reset()

	// Latency at a steady rate.
	if s.start != nil {
		s.start("latency")
	}
	n := int(float64(*rate) * *seconds)
	start := time.Now()
	cpu := benchenv.CPU(s.pid)
	for i := 0; i < n; i++ {
		if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(*rate))); d > 0 {
			time.Sleep(d)
		}
		g, b := envelope(i, *groups)
		if err := s.publish(ctx, g, b); err != nil {
			log.Fatalf("%s: publish: %v", s.name, err)
		}
	}
	lat := load.WaitFor(int64(n)*perGroup, 30*time.Second)
	latCPU := float64((benchenv.CPU(s.pid) - cpu).Microseconds()) / float64(max(lat.Deliveries, 1))
	fmt.Printf("%s latency: %d msg/s to %d clients: %d deliveries, p50 %s, p90 %s, p99 %s, max %s; server CPU %.1f µs per delivery (load average %s)\n", s.name, *rate, *clients,
		lat.Deliveries, benchenv.Ms(lat.P50), benchenv.Ms(lat.P90), benchenv.Ms(lat.P99), benchenv.Ms(lat.Max),
		latCPU, benchenv.LoadAvg())

	// Throughput: everything at once from a few callers.
	load.Reset()
	if s.start != nil {
		s.start("throughput")
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	start = time.Now()
	cpu = benchenv.CPU(s.pid)
	for range *publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= *messages {
					return
				}
				g, b := envelope(i, *groups)
				if err := s.publish(ctx, g, b); err != nil {
					log.Fatalf("%s: publish: %v", s.name, err)
				}
			}
		}()
	}
	wg.Wait()
	published := time.Since(start)
	thr := load.WaitFor(int64(*messages)*perGroup, 2*time.Minute)
	span := time.Duration(thr.Last - start.UnixNano())
	r := result{rate: float64(thr.Deliveries) / span.Seconds(), p50: lat.P50, p99: lat.P99, max: lat.Max, delivered: thr.Deliveries,
		cpu: float64((benchenv.CPU(s.pid) - cpu).Microseconds()) / float64(max(thr.Deliveries, 1)), latCPU: latCPU, rss: benchenv.PeakRSS(s.pid)}
	fmt.Printf("%s throughput: %d messages published in %v, %d deliveries in %v: %.0f deliveries/s, server CPU %.1f µs per delivery (p99 under that load %s)\n", s.name, *messages,
		published.Round(time.Millisecond), thr.Deliveries, span.Round(time.Millisecond), r.rate,
		r.cpu, benchenv.Ms(thr.P99))
	return r
}

// startCentrifugo runs the Centrifugo server (see package centrifugo).
func startCentrifugo() server {
	srv := centrifugo.Start()
	return server{
		name:    "Centrifugo",
		pid:     srv.Pid(),
		load:    benchenv.LoadConfig{Proto: "centrifugo", URL: srv.WebSocketURL(), Key: srv.Secret, Clients: *clients, Groups: *groups},
		publish: srv.Publish,
		stop:    srv.Stop,
	}
}

// startHub runs `changecast hub` (the binary) and adds user u{i} to group
// g{i mod groups} over its REST API, as an app server would.
func startHub() server {
	const key = "bench-access-key-0123456789abcdef-0123456789"
	addr, pid, stop := benchenv.HubProcess(key)
	pub, err := signalr.New("Endpoint=http://"+addr+";AccessKey="+key+";Version=1.0;",
		signalr.WithHTTPClient(&http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < *clients; i++ {
		if err := pub.Client().AddUserToGroup(ctx, "orders", fmt.Sprintf("g%d", i%*groups), fmt.Sprintf("u%d", i), 0); err != nil {
			log.Fatalf("add user to group: %v", err)
		}
	}
	return server{
		name: "changecast",
		pid:  pid,
		load: benchenv.LoadConfig{Proto: "signalr", URL: "ws://" + addr + "/client/?hub=orders", Key: key, Clients: *clients},
		publish: func(ctx context.Context, group string, env []byte) error {
			return pub.Publish(ctx, &publish.Batch{Audience: publish.Audience{Hub: "orders", Group: group, Method: "changes"}, Payload: env})
		},
		stop: stop,
	}
}
