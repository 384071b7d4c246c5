// Command idle measures what an idle WebSocket connection costs the server
// (issue 20): `changecast hub` (the binary) and the Centrifugo v6.9.1
// server each take N connections that finish their handshake (SignalR JSON
// handshake; Centrifugo's connect command, no subscription) and then only
// answer keep-alives. The figure is the server process's resident set
// (VmRSS) once it is quiet with the N connections, less the same before
// them, over N. Runs alternate (hub, Centrifugo, hub, …); the best of each
// counts. Target: ≤ 16 KB per idle connection for the hub.
//
//	go run ./bench/idle -conns 19000
//
// N is capped by the descriptor limit (ulimit -n): the server holds one
// descriptor per connection. The clients (bench/loadclient) run in
// processes of at most -per-process connections each, spread over several
// loopback source addresses so that ephemeral ports never run out.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/changecast/changecast/bench/internal/benchenv"
	"github.com/changecast/changecast/bench/internal/centrifugo"
)

var (
	conns      = flag.Int("conns", 19000, "idle connections per server (capped by the descriptor limit)")
	runs       = flag.Int("runs", 2, "runs of each server, alternated; the best counts")
	perProcess = flag.Int("per-process", 10000, "connections per client process")
	sources    = flag.Int("sources", 4, "client source addresses 127.0.0.1…127.0.0.{sources}")
	settle     = flag.Duration("settle", 3*time.Second, "the server is quiet when its RSS moved less than 0.5% over this long")
	buildCent  = flag.Bool("centrifugo-build", true, "build Centrifugo when it is not in the cache yet; false: skip it then")
	hubProfile = flag.String("hubprofile", "", "instead of comparing: run the hub in this process, say where its memory per idle connection goes (goroutines, stacks, heap) and write a heap profile here")
)

// targetBytes is issue 20's target for the hub: 16 KB per idle connection.
const targetBytes = 16 << 10

const hubKey = "bench-access-key-0123456789abcdef-0123456789"

// server is one system under test.
type server struct {
	name string
	pid  int
	load benchenv.LoadConfig
	stop func()
}

func main() {
	flag.Parse()
	n := capConns(*conns)
	if *hubProfile != "" {
		profileHub(n)
		return
	}
	benchenv.PinSelf()
	withCent := *buildCent || centrifugo.Built()
	fmt.Printf("%d idle connections per server, clients in processes of ≤ %d over %d source addresses; pinned: %v\n",
		n, *perProcess, *sources, benchenv.Pinned())
	var hub, cent int64 = -1, -1
	for r := 1; r <= *runs; r++ {
		hub = best(hub, measure(startHub(n), n, r))
		if withCent {
			cent = best(cent, measure(startCentrifugo(n), n, r))
		}
	}
	verdict := "met"
	if hub > targetBytes {
		verdict = "NOT met"
	}
	fmt.Printf("changecast hub: best %.1f KB per idle connection (target ≤ 16 KB: %s)\n", kb(hub), verdict)
	if !withCent {
		fmt.Printf("ratio RSS per idle connection changecast/Centrifugo: n/a (Centrifugo %s is not built and -centrifugo-build=false)\n", centrifugo.Version)
		return
	}
	fmt.Printf("Centrifugo %s: best %.1f KB per idle connection\n", centrifugo.Version, kb(cent))
	fmt.Printf("ratio RSS per idle connection changecast/Centrifugo: %.2f\n", float64(hub)/float64(max(cent, 1)))
}

// capConns keeps n under the descriptor limit, less room for the server's
// own files (listener, logs, runtime).
func capConns(n int) int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Fatal(err)
	}
	if most := int(lim.Max) - 200; n > most {
		fmt.Printf("-conns %d is over the descriptor limit (%d): %d connections\n", n, lim.Max, most)
		n = most
	}
	if n < 1 {
		log.Fatal("-conns must be at least 1")
	}
	return n
}

func best(a, b int64) int64 {
	if a < 0 || b < a {
		return b
	}
	return a
}

func kb(b int64) float64 { return float64(b) / 1024 }

// measure connects n idle clients to s and returns the server's resident
// bytes per connection.
func measure(s server, n, run int) int64 {
	defer s.stop()
	before := quietRSS(s.pid)
	start := time.Now()
	stopLoads := startLoads(s.load, n)
	defer stopLoads()
	connected := time.Since(start)
	after := quietRSS(s.pid)
	fds := descriptors(s.pid)
	if fds < n {
		log.Fatalf("%s holds %d descriptors, fewer than the %d connections", s.name, fds, n)
	}
	per := (after - before) / int64(n)
	fmt.Printf("%s run %d: %d connections in %v (the server holds %d descriptors); RSS %.1f MB → %.1f MB: %.1f KB per connection (load average %s)\n",
		s.name, run, n, connected.Round(time.Millisecond), fds, float64(before)/(1<<20), float64(after)/(1<<20), kb(per), benchenv.LoadAvg())
	return per
}

// startLoads opens n connections of config c from processes of at most
// -per-process each, over -sources source addresses; it returns once every
// one finished its handshake.
func startLoads(c benchenv.LoadConfig, n int) (stop func()) {
	var loads []*benchenv.Load
	for first := 0; first < n; first += *perProcess {
		c.First, c.Clients, c.Sources = first, min(*perProcess, n-first), *sources
		loads = append(loads, benchenv.StartLoad(c))
	}
	return func() {
		for _, l := range loads {
			l.Stop()
		}
	}
}

// quietRSS waits until pid's RSS has moved less than 0.5% over -settle
// (at most a minute) and returns it.
func quietRSS(pid int) int64 {
	const every = 250 * time.Millisecond
	window := max(int(*settle/every), 2)
	var samples []int64
	deadline := time.Now().Add(time.Minute)
	for {
		rss := benchenv.RSS(pid)
		if rss == 0 {
			log.Fatalf("process %d: no VmRSS (did it exit?)", pid)
		}
		samples = append(samples, rss)
		if len(samples) >= window {
			lo, hi := rss, rss
			for _, v := range samples[len(samples)-window:] {
				lo, hi = min(lo, v), max(hi, v)
			}
			if float64(hi-lo) <= 0.005*float64(hi) {
				return rss
			}
			if time.Now().After(deadline) {
				log.Printf("process %d: RSS still moving after a minute (%d–%d bytes); taking %d", pid, lo, hi, rss)
				return rss
			}
		}
		time.Sleep(every)
	}
}

// descriptors counts pid's open files.
func descriptors(pid int) int {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		log.Fatal(err)
	}
	return len(es)
}

func startHub(n int) server {
	addr, pid, stop := benchenv.HubProcess(hubKey)
	return server{name: "changecast hub", pid: pid, stop: stop,
		load: benchenv.LoadConfig{Proto: "signalr", URL: "ws://" + addr + "/client/?hub=orders", Key: hubKey, Clients: n}}
}

func startCentrifugo(n int) server {
	srv := centrifugo.Start()
	return server{name: "Centrifugo " + centrifugo.Version, pid: srv.Pid(), stop: srv.Stop,
		load: benchenv.LoadConfig{Proto: "centrifugo", URL: srv.WebSocketURL(), Key: srv.Secret, Clients: n, Idle: true}}
}

// profileHub connects n idle clients to a hub in this process and breaks
// its memory per connection down: goroutines, stacks, heap in use after a
// GC, RSS; the heap profile says which allocations hold the heap.
func profileHub(n int) {
	h, addr, stop := benchenv.Hub()
	defer stop()
	key := h.AccessKey()
	snap := func() (runtime.MemStats, int, int64) {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m, runtime.NumGoroutine(), quietRSS(os.Getpid())
	}
	m0, g0, rss0 := snap()
	s := server{name: "changecast hub (in-process)", pid: os.Getpid(), stop: func() {},
		load: benchenv.LoadConfig{Proto: "signalr", URL: "ws://" + addr + "/client/?hub=orders", Key: key, Clients: n}}
	stopLoads := startLoads(s.load, n)
	m1, g1, rss1 := snap()
	f, err := os.Create(*hubProfile)
	if err != nil {
		log.Fatal(err)
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		log.Fatal(err)
	}
	f.Close()
	stopLoads()
	per := func(a, b uint64) float64 { return kb(int64(b-a) / int64(n)) }
	fmt.Printf("changecast hub (in-process), %d idle connections, per connection: %.2f goroutines; stacks %.1f KB; heap in use %.1f KB (%.0f objects); Go runtime total (Sys) %.1f KB; RSS %.1f KB\n",
		n, float64(g1-g0)/float64(n), per(m0.StackInuse, m1.StackInuse), per(m0.HeapInuse, m1.HeapInuse),
		float64(m1.HeapObjects-m0.HeapObjects)/float64(n), per(m0.Sys, m1.Sys), kb((rss1-rss0)/int64(n)))
	fmt.Printf("heap profile: %s (go tool pprof -sample_index=inuse_space -top %s)\n", *hubProfile, *hubProfile)
}
