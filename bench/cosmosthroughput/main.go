// Command cosmosthroughput measures the Cosmos DB pipeline (change feed
// reads through azcosmos, decode, route, diff, batch, publish to the
// in-process built-in hub) against a bare azcosmos change-feed read loop
// (the same page size, nothing done with the documents) over the same
// container, in the same run. The account is changecast's Cosmos emulator
// (`changecast emulate cosmos`, its own process; no emulator with a change
// feed runs here); nothing is pinned. Both read the container from the beginning, alternated (-runs),
// and the best run of each counts.
//
//	go run ./bench/cosmosthroughput -docs 20000
//
// The target (issue 11): changecast/bare loop ≥ 0.9.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"github.com/changecast/changecast/schema/template"
	"github.com/changecast/changecast/schema/wire"
	"github.com/changecast/changecast/worker"
	"log"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/changecast/changecast/bench/internal/benchenv"
	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/changefeed/cosmos"
	emulator "github.com/changecast/changecast/emulator/cosmos"
	"github.com/changecast/changecast/lease"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/schema/config"
)

var (
	docs     = flag.Int("docs", 20000, "documents written (each once)")
	maxItems = flag.Int("maxItems", config.DefaultMaxItems, "page size of both readers (source.cosmos.maxItems)")
	verbose  = flag.Bool("v", false, "say how long the runner took to publish its first change")
	runs     = flag.Int("runs", 3, "runs of each, alternated; the best counts")
	cpuprof  = flag.String("cpuprofile", "", "write a CPU profile of the changecast runs here")
)

const dbName, collName = "bench", "orders"

func main() {
	flag.Parse()
	addr := fmt.Sprintf("127.0.0.1:%d", benchenv.FreePort())
	// Not pinned: the emulator is the bottleneck of both readers, and each
	// reader's own work competes with it for the same two cores.
	cmd := exec.Command(benchenv.Binary("changecast", "github.com/changecast/changecast/cmd/changecast"),
		"emulate", "cosmos", "-listen", addr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	benchenv.WaitTCP(addr, 30*time.Second)
	cred, err := azcosmos.NewKeyCredential(emulator.DefaultKey)
	if err != nil {
		log.Fatal(err)
	}
	client, err := azcosmos.NewClientWithKey("http://"+addr+"/", cred, nil)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	write(ctx, client)

	emu := func(f func(context.Context, *azcosmos.Client) time.Duration) time.Duration {
		cpu := benchenv.CPU(cmd.Process.Pid)
		d := f(ctx, client)
		if *verbose {
			fmt.Printf("emulator CPU %v over %v\n", benchenv.CPU(cmd.Process.Pid)-cpu, d.Round(time.Millisecond))
		}
		return d
	}
	// Alternated, and the best run of each counts: a shared machine's
	// noise then costs neither side more than the other.
	var refs, ccs []time.Duration
	for range *runs {
		refs = append(refs, emu(bare))
		ccs = append(ccs, emu(pipeline))
	}
	rate := func(d time.Duration) float64 { return float64(*docs) / d.Seconds() }
	rates := func(ds []time.Duration) string {
		var parts []string
		for _, d := range ds {
			parts = append(parts, fmt.Sprintf("%.0f", rate(d)))
		}
		return strings.Join(parts, " / ")
	}
	ref, cc := slices.Min(refs), slices.Min(ccs)
	fmt.Printf("bare azcosmos change-feed loop, runs: %s changes/s\n", rates(refs))
	fmt.Printf("changecast (read→decode→map→batch→in-process hub), runs: %s changes/s\n", rates(ccs))
	fmt.Printf("ratio changecast/bare loop: %.2f (target ≥ 0.90)\n", rate(cc)/rate(ref))
}

// write creates the container and writes the documents (about 300 bytes,
// 50 tenants) from a few writers.
func write(ctx context.Context, client *azcosmos.Client) {
	if _, err := client.CreateDatabase(ctx, azcosmos.DatabaseProperties{ID: dbName}, nil); err != nil {
		log.Fatal(err)
	}
	db, _ := client.NewDatabase(dbName)
	if _, err := db.CreateContainer(ctx, azcosmos.ContainerProperties{ID: collName,
		PartitionKeyDefinition: azcosmos.PartitionKeyDefinition{Paths: []string{"/id"}}}, nil); err != nil {
		log.Fatal(err)
	}
	c, _ := client.NewContainer(dbName, collName)
	fmt.Printf("writing %d documents...\n", *docs)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > *docs {
					return
				}
				id := fmt.Sprint(i)
				b, _ := json.Marshal(map[string]any{"id": id, "tenant": fmt.Sprintf("tenant-%d", i%50), "status": "new", "qty": i % 7,
					"total": float64(i) * 1.25, "customer": "Grace Hopper", "note": fmt.Sprintf("note %d %040d", i, 0)})
				if _, err := c.UpsertItem(ctx, azcosmos.NewPartitionKeyString(id), b, nil); err != nil {
					log.Fatal(err)
				}
			}
		}()
	}
	wg.Wait()
}

// routeFields are what the worker gives the routing index (the fields the
// mappings route by), so the bench measures what the product runs.
func routeFields(maps []publish.Mapping) []template.Pointer {
	f, err := worker.CosmosRouteFields(maps, collName)
	if err != nil {
		log.Fatal(err)
	}
	return f
}

// bare reads the whole feed from the beginning with azcosmos, page after
// page, until a read returns nothing, and counts the documents.
func bare(ctx context.Context, client *azcosmos.Client) time.Duration {
	c, _ := client.NewContainer(dbName, collName)
	start := time.Now()
	opts := azcosmos.ChangeFeedOptions{MaxItemCount: int32(*maxItems), FeedRange: &azcosmos.FeedRange{MinInclusive: "", MaxExclusive: "FF"}}
	n := 0
	for n < *docs {
		resp, err := c.ReadChangeFeed(ctx, &opts)
		if err != nil {
			log.Fatalf("read change feed: %v", err)
		}
		if len(resp.Items) == 0 {
			log.Fatalf("the feed ended after %d of %d documents", n, *docs)
		}
		n += len(resp.Items)
		tok := resp.ContinuationToken
		opts = azcosmos.ChangeFeedOptions{MaxItemCount: int32(*maxItems), Continuation: &tok}
	}
	return time.Since(start)
}

// pipeline runs changecast's Cosmos runner (a memory lease store, one
// lease, the config's defaults but the start: beginning) into the
// in-process hub until every document was published.
func pipeline(ctx context.Context, client *azcosmos.Client) time.Duration {
	h, _, stopHub := benchenv.Hub()
	defer stopHub()
	hub := h.Publisher()
	var published atomic.Int64
	var first atomic.Int64 // unix ns of the first publish
	done := make(chan struct{})
	var once sync.Once
	pub := publish.PublisherFunc(func(ctx context.Context, b *publish.Batch) error {
		if err := hub.Publish(ctx, b); err != nil {
			return err
		}
		first.CompareAndSwap(0, time.Now().UnixNano())
		// Documents, not outputs: a change may also send a delete to the
		// whole hub (the routing index's first pass from the beginning).
		n := 0
		for _, c := range b.Envelope.Changes {
			if c.Op != wire.OpDelete {
				n++
			}
		}
		if published.Add(int64(n)) >= int64(*docs) {
			once.Do(func() { close(done) })
		}
		return nil
	})
	maps := []publish.Mapping{{Collection: collName, Hub: "orders", Group: "{/tenant}", Method: "changes"}}
	r, err := changefeed.NewRunner(changefeed.RunnerConfig{
		Partitions: &cosmos.Container{Client: client, Database: dbName, Container: collName,
			Feed: cosmos.FeedConfig{Start: cosmos.Start{Kind: cosmos.StartBeginning}, MaxItems: *maxItems, Logger: benchenv.Quiet,
				RoutingIndex: true, RouteFields: routeFields(maps)}},
		Store: lease.NewMemoryStore(),
		NewConsumer: func(*lease.Lease) (changefeed.Consumer, error) {
			m, err := publish.NewMapper(maps, publish.MapperOptions{ShadowSize: config.DefaultShadowSize, Logger: benchenv.Quiet})
			if err != nil {
				return nil, err
			}
			return publish.NewPipeline(publish.PipelineConfig{Source: "cosmos:bench/orders", Logger: benchenv.Quiet,
				Batch: publish.BatchLimits{MaxChanges: config.DefaultMaxChanges, MaxBytes: config.DefaultMaxBytes, MaxDelay: config.DefaultMaxDelay}}, m, pub), nil
		},
		Owner:     "bench",
		IdleReady: true,
		Logger:    benchenv.Quiet,
	})
	if err != nil {
		log.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	rerr := make(chan error, 1)
	if *cpuprof != "" {
		f, err := os.Create(*cpuprof)
		if err != nil {
			log.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	start := time.Now()
	go func() { rerr <- r.Run(rctx) }()
	select {
	case <-done:
	case err := <-rerr:
		log.Fatalf("runner stopped: %v", err)
	case <-time.After(5 * time.Minute):
		log.Fatalf("published %d of %d in 5 minutes", published.Load(), *docs)
	}
	d := time.Since(start)
	stop()
	<-rerr
	if *verbose {
		fmt.Printf("changecast: first change published %v after the runner started\n", time.Duration(first.Load()-start.UnixNano()).Round(time.Millisecond))
	}
	return d
}
