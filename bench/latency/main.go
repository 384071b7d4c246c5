// Command latency measures commit → client latency of changecast as a user
// runs it (`changecast run` with the built-in hub, reading PostgreSQL), with
// the clients in their own process (bench/loadclient: raw WebSocket, SignalR
// JSON protocol, every message decoded and every change timed by its commit
// time), at a steady rate of single-row transactions. Two workloads:
//
//   - grouped: N clients in G groups (user u{i} in group g{i mod G}), each
//     change to one group;
//   - broadcast: N clients, each change to all of them.
//
// For comparison, the same harness drives the Centrifugo v6.9.1 server:
// the same writer publishes the same envelope per change through its HTTP
// API (stamped when published), to channel g{i mod G} or to one channel,
// and the same clients (Centrifugo's JSON protocol) time it. Centrifugo's
// path is shorter (no database, no WAL decoding): the comparison is
// conservative for changecast.
//
// The servers run on one core, the clients and the writer on the other;
// PostgreSQL floats. Targets (ARCHITECTURE.md §9): grouped p50 ≤ 3 ms, p99 ≤
// 15 ms; p99 ≤ Centrifugo's.
//
//	eval "$(scripts/pg.sh start)"; go run ./bench/latency -clients 1000 -groups 100 -rate 1000
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/changecast/changecast/bench/internal/benchenv"
	"github.com/changecast/changecast/bench/internal/centrifugo"
	"github.com/changecast/changecast/publish/signalr"
	"github.com/changecast/changecast/schema/wire"
)

var (
	clients   = flag.Int("clients", 1000, "WebSocket clients")
	groups    = flag.Int("groups", 100, "groups of the grouped workload")
	rate      = flag.Int("rate", 1000, "changes per second")
	seconds   = flag.Float64("seconds", 5, "how long to write")
	workloads = flag.String("workloads", "grouped,broadcast", "which workloads")
	reference = flag.Bool("centrifugo", true, "also run the Centrifugo server in the same harness")
)

type result struct {
	p50, p90, p99, max, got, want int64
	server, load                  float64 // CPU used over the measured phase, in cores
}

func main() {
	flag.Parse()
	benchenv.PinSelf()
	db := benchenv.Open()
	defer db.Close()
	// The walsender sends only flushed WAL: commit synchronously (the test
	// cluster defaults to synchronous_commit=off, which would add up to
	// wal_writer_delay to every change).
	db.Must(`SET synchronous_commit = on`)
	fmt.Printf("%d changes/s for %.0fs, %d clients (out of process); pinned: %v\n", *rate, *seconds, *clients, benchenv.Pinned())
	for _, w := range strings.Split(*workloads, ",") {
		g := *groups
		if w == "broadcast" {
			g = 0
		} else if w != "grouped" {
			log.Fatalf("unknown workload %q", w)
		}
		cc := runChangecast(db, g)
		print(w, "changecast", cc)
		if g > 0 {
			fmt.Printf("ratio %s p50/3ms: %.2f, p99/15ms: %.2f (targets ≤ 1.00)\n", w, float64(cc.p50)/3000, float64(cc.p99)/15000)
		}
		if *reference {
			ref := runCentrifugo(g)
			print(w, "Centrifugo "+centrifugo.Version, ref)
			fmt.Printf("ratio %s p99 changecast/Centrifugo: %.2f (target ≤ 1.00)\n", w, float64(cc.p99)/float64(max(ref.p99, 1)))
		}
	}
}

func print(w, who string, r result) {
	fmt.Printf("%s, %s: %d of %d deliveries; commit→client p50 %s, p90 %s, p99 %s, max %s; CPU: server %.0f%%, clients %.0f%% of a core (load average %s)\n",
		w, who, r.got, r.want, benchenv.Ms(r.p50), benchenv.Ms(r.p90), benchenv.Ms(r.p99), benchenv.Ms(r.max), 100*r.server, 100*r.load, benchenv.LoadAvg())
}

// measure warms the clients up, then runs write at the steady rate and
// collects what the clients timed; perChange is how many clients receive
// each change.
func measure(load *benchenv.Load, server int, perChange int64, write func(i int)) result {
	const warm = 200
	for i := 0; i < warm; i++ {
		write(i)
	}
	load.WaitFor(warm*perChange, 30*time.Second)
	load.Reset()
	total := int(float64(*rate) * *seconds)
	start := time.Now()
	cpuS, cpuL := benchenv.CPU(server), benchenv.CPU(load.Pid())
	for i := 0; i < total; i++ {
		if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(*rate))); d > 0 {
			time.Sleep(d)
		}
		write(warm + i)
	}
	want := int64(total) * perChange
	r := load.WaitFor(want, 60*time.Second)
	wall := time.Since(start).Seconds()
	return result{p50: r.P50, p90: r.P90, p99: r.P99, max: r.Max, got: r.Deliveries, want: want,
		server: (benchenv.CPU(server) - cpuS).Seconds() / wall, load: (benchenv.CPU(load.Pid()) - cpuL).Seconds() / wall}
}

func perChange(groups int) int64 {
	if groups == 0 {
		return int64(*clients)
	}
	return int64(*clients / groups)
}

// runChangecast runs `changecast run` on the table and times the clients.
func runChangecast(db *benchenv.DB, groups int) result {
	ctx := context.Background()
	db.Table("lat_orders", `id int PRIMARY KEY, g text, status text, n int`, "lat")
	db.Slot("lat", false) // changecast creates it
	dir, err := os.MkdirTemp("", "changecast-latency")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	addr := fmt.Sprintf("127.0.0.1:%d", benchenv.FreePort())
	const key = "bench-access-key-0123456789abcdef-0123456789"
	group := ""
	if groups > 0 {
		group = `group: "{/g}"`
	}
	cfg := fmt.Sprintf(`source:
  postgres: {url: %q, slot: lat, publication: lat, tables: [public.lat_orders]}
lease: {store: memory}
mappings:
  - {collection: public.lat_orders, hub: orders, %s}
publish:
  target: hub
hub:
  listen: %q
  accessKey: %q
  negotiate: {auth: {anonymous: true}}
`, db.URL, group, addr, key)
	path := filepath.Join(dir, "changecast.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		log.Fatal(err)
	}
	cmd := benchenv.Command(benchenv.ServerCore, benchenv.Binary("changecast", "github.com/changecast/changecast/cmd/changecast"), "run", "-c", path)
	cmd.Env = append(os.Environ(), "CHANGECAST_LOG_LEVEL=error", "CHANGECAST_LOG=text")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	benchenv.WaitTCP(addr, 30*time.Second)
	for deadline := time.Now().Add(30 * time.Second); ; {
		var active bool
		db.QueryRow(ctx, `SELECT coalesce((SELECT active FROM pg_replication_slots WHERE slot_name = 'lat'), false)`).Scan(&active)
		if active {
			break
		}
		if time.Now().After(deadline) {
			log.Fatal("changecast did not start streaming in 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if groups > 0 {
		rest, err := signalr.New("Endpoint=http://" + addr + ";AccessKey=" + key + ";Version=1.0;")
		if err != nil {
			log.Fatal(err)
		}
		for i := 0; i < *clients; i++ {
			if err := rest.Client().AddUserToGroup(ctx, "orders", fmt.Sprint(i%groups), fmt.Sprintf("u%d", i), 0); err != nil {
				log.Fatal(err)
			}
		}
	}
	load := benchenv.StartLoad(benchenv.LoadConfig{Proto: "signalr", URL: "ws://" + addr + "/client/?hub=orders", Key: key, Clients: *clients})
	defer load.Stop()
	return measure(load, cmd.Process.Pid, perChange(groups), func(i int) {
		g := 0
		if groups > 0 {
			g = i % groups
		}
		// One single-row transaction per change, as an application writes.
		if _, err := db.Exec(ctx, `INSERT INTO lat_orders VALUES ($1, $2, 'new', 0)
			ON CONFLICT (id) DO UPDATE SET n = lat_orders.n + 1, status = 'paid'`, i%2000, fmt.Sprint(g)); err != nil {
			log.Fatal(err)
		}
	})
}

// runCentrifugo publishes an envelope per change to the Centrifugo server
// and times the same clients.
func runCentrifugo(groups int) result {
	srv := centrifugo.Start()
	defer srv.Stop()
	load := benchenv.StartLoad(benchenv.LoadConfig{Proto: "centrifugo", URL: srv.WebSocketURL(), Key: srv.Secret, Clients: *clients, Groups: groups})
	defer load.Stop()
	ctx := context.Background()
	return measure(load, srv.Pid(), perChange(groups), func(i int) {
		ch := "all"
		if groups > 0 {
			ch = fmt.Sprintf("g%d", i%groups)
		}
		// A change of the same shape as the table's, as changecast sends it.
		doc := fmt.Sprintf(`{"g":%q,"id":%d,"n":1,"status":"paid"}`, ch, i%2000)
		env, _ := json.Marshal(wire.Envelope{Source: "postgres:bench/lat", Hub: "orders", Group: ch, Changes: []wire.Entry{{
			Op: wire.OpUpsert, Collection: "public.lat_orders", ID: fmt.Sprint(i % 2000), V: fmt.Sprintf("%d.1", i),
			Doc: json.RawMessage(doc), TS: time.Now().UTC().Format(time.RFC3339Nano)}}})
		if err := srv.Publish(ctx, ch, env); err != nil {
			log.Fatal(err)
		}
	})
}
