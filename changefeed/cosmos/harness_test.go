package cosmos_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"
	"go.uber.org/goleak"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/changefeed/cosmos"
	emulator "github.com/changecast/changecast/emulator/cosmos"
	"github.com/changecast/changecast/emulator/cosmos/cosmostest"
	"github.com/changecast/changecast/internal/replica"
	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/lease"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/schema/template"
	"github.com/changecast/changecast/schema/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Short lease intervals so that takeovers happen in about a second. Expiry
// is several renewals, as with the defaults, so a slow call on a busy
// machine does not lose a lease.
const (
	acquireEvery = 50 * time.Millisecond
	renewEvery   = 100 * time.Millisecond
	expiry       = time.Second
	patience     = 30 * time.Second
)

const (
	dbName   = "app"
	collName = "orders"
)

func logger() *slog.Logger {
	if os.Getenv("CHANGECAST_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// world is one fake Cosmos account with the monitored container, the
// documents written to it, and what the workers published, applied to a
// client replica.
type world struct {
	t   *testing.T
	srv *cosmostest.Server

	mu        sync.Mutex
	want      map[string]int      // id → last v written
	versions  map[string][]string // id → versions published as data, in publish order
	rep       *replica.Replica
	published atomic.Int64
	block     atomic.Bool // publishing fails (retryable) while set
}

func newWorld(t *testing.T, partitions int, opts ...emulator.Option) *world {
	t.Helper()
	srv := cosmostest.Start(t, append([]emulator.Option{emulator.WithPartitions(partitions)}, opts...)...)
	if err := srv.CreateContainer(dbName, collName, emulator.ContainerSpec{PartitionKeyPaths: []string{"/pk"}, Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
	return &world{t: t, srv: srv, want: map[string]int{}, versions: map[string][]string{}, rep: replica.New()}
}

func (w *world) client() *azcosmos.Client {
	w.t.Helper()
	return w.srv.Client(w.t)
}

// write bumps document id to its next version.
func (w *world) write(id string, extra ...map[string]any) {
	w.t.Helper()
	w.mu.Lock()
	w.want[id]++
	v := w.want[id]
	w.mu.Unlock()
	doc := map[string]any{"id": id, "pk": "p-" + id, "v": v, "note": fmt.Sprintf("version %d of %s", v, id),
		"address": map[string]any{"street": "1 Long Street Name", "city": "Somewhere", "zip": "12345", "country": "Nowhere"}}
	for _, e := range extra {
		for k, x := range e {
			doc[k] = x
		}
	}
	if _, err := w.srv.Upsert(dbName, collName, doc); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) writeMany(prefix string, n int) {
	for i := range n {
		w.write(fmt.Sprintf("%s%03d", prefix, i))
	}
}

// Publish applies a batch to the replica and records versions.
func (w *world) Publish(ctx context.Context, b *publish.Batch) error {
	if w.block.Load() {
		return publish.Retryable(fmt.Errorf("test: target down"), 5*time.Millisecond)
	}
	if err := w.rep.ApplyJSON(b.Payload); err != nil {
		w.t.Errorf("replica: %v", err)
	}
	w.mu.Lock()
	for _, c := range b.Envelope.Changes {
		if c.Op == wire.OpUpsert || c.Op == wire.OpPatch {
			w.versions[c.ID] = append(w.versions[c.ID], c.V)
		}
	}
	w.mu.Unlock()
	w.published.Add(int64(len(b.Envelope.Changes)))
	return nil
}

// missing lists documents whose last written version the replica lacks.
func (w *world) missing() []string {
	docs, _ := w.rep.Snapshot()
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for id, v := range w.want {
		got := -1
		for _, d := range docs[collName+"/"+id] {
			var x struct{ V int }
			if json.Unmarshal(d.Doc, &x) == nil {
				got = max(got, x.V)
			}
		}
		if got != v {
			out = append(out, fmt.Sprintf("%s (have v%d, want v%d)", id, got, v))
		}
	}
	sort.Strings(out)
	return out
}

func (w *world) waitDelivered() {
	w.t.Helper()
	testkit.Eventually(w.t, patience, "every document delivered at its last version", func() string {
		if m := w.missing(); len(m) > 0 {
			return fmt.Sprintf("%d missing, e.g. %v", len(m), m[:min(len(m), 5)])
		}
		return ""
	})
}

var mappings = []publish.Mapping{{Collection: collName, Hub: "orders", Method: "changes"}}

func newMapper(maxChangeBytes int) func() (*publish.Mapper, error) {
	return func() (*publish.Mapper, error) {
		return publish.NewMapper(mappings, publish.MapperOptions{ShadowSize: 10000, MaxChangeBytes: maxChangeBytes, Logger: logger()})
	}
}

// worker is one running Runner.
type worker struct {
	r    *changefeed.Runner
	stop func() error
}

// workerConfig is what a test varies of a worker: the container side and
// the publishing side of the runner.
type workerConfig struct {
	Client      *azcosmos.Client
	Container   string
	Feed        cosmos.FeedConfig
	Store       lease.Store
	Owner       string
	Publisher   publish.Publisher
	NewMapper   func() (*publish.Mapper, error)
	ShadowStore publish.ShadowStore
	Logger      *slog.Logger // default logger()
}

func (w *world) config(owner string, store lease.Store) workerConfig {
	return workerConfig{
		Client: w.client(), Container: collName,
		// The routing index on, as the worker has it by default: every
		// lease (takeovers, split children, throttling) seeds it first.
		Feed: cosmos.FeedConfig{Start: cosmos.Start{Kind: cosmos.StartBeginning}, PollInterval: 20 * time.Millisecond, MaxItems: 25,
			RoutingIndex: true, RouteFields: []template.Pointer{{"tenant"}}, Logger: logger()},
		Store: store, Owner: owner, Publisher: w, NewMapper: newMapper(0),
	}
}

// container is the monitored container of c, as the worker assembles it
// (snapshots read the streams' positions from the lease store).
func (c workerConfig) container() *cosmos.Container {
	return &cosmos.Container{Client: c.Client, Database: dbName, Container: c.Container, Feed: c.Feed, Processor: "test", Leases: c.Store}
}

// runner builds the changefeed.Runner of c, as the worker assembles it.
func (c workerConfig) runner(t *testing.T) *changefeed.Runner {
	t.Helper()
	return c.runnerOf(t, c.container())
}

func (c workerConfig) runnerOf(t *testing.T, cont *cosmos.Container) *changefeed.Runner {
	t.Helper()
	r, err := changefeed.NewRunner(changefeed.RunnerConfig{
		Partitions: cont,
		Store:      c.Store,
		NewConsumer: func(*lease.Lease) (changefeed.Consumer, error) {
			m, err := c.NewMapper()
			if err != nil {
				return nil, err
			}
			return publish.NewPipeline(publish.PipelineConfig{Source: "cosmos:" + dbName + "/" + c.Container,
				Batch:       publish.BatchLimits{MaxChanges: 100, MaxBytes: 256 << 10, MaxDelay: 5 * time.Millisecond},
				ShadowStore: c.ShadowStore, Logger: logger()}, m, c.Publisher), nil
		},
		Processor: changefeed.ProcessorConfig{DrainTimeout: 5 * time.Second},
		Owner:     c.Owner, AcquireInterval: acquireEvery, RenewInterval: renewEvery, Expiry: expiry,
		IdleReady: true,
		Logger:    cmp.Or(c.Logger, logger()).With("owner", c.Owner),
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (w *world) start(cfg workerConfig) *worker {
	w.t.Helper()
	r := cfg.runner(w.t)
	stop := testkit.Run(w.t, r.Run)
	testkit.Until(w.t, patience, "runner ready", r.Ready)
	return &worker{r: r, stop: stop}
}

func listLeases(t *testing.T, s lease.Store, prefix string) []*lease.Lease {
	t.Helper()
	ls, err := s.List(context.Background(), prefix+lease.Separator)
	if err != nil {
		t.Fatal(err)
	}
	return ls
}
