package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"
	"github.com/prometheus/client_golang/prometheus"

	emulator "github.com/changecast/changecast/emulator/cosmos"
	"github.com/changecast/changecast/emulator/cosmos/cosmostest"
	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/schema/config"
	"github.com/changecast/changecast/worker"
)

const (
	cosmosDB   = "app"
	cosmosColl = "orders"
)

// cosmosRun is how startCosmosWorker runs the worker.
type cosmosRun struct {
	shadowURL string // publish.shadowStore; empty: none
	startFrom string // default beginning
	extra     string // more source.cosmos settings, e.g. "routingIndex: false, "
	registry  *prometheus.Registry
}

// startCosmosWorker runs changecast (worker.Run) on the emulator's
// app/orders, leases in memory, with the built-in hub and the same JWT
// negotiate as startWorker (and publish.shadowStore when shadowURL is set);
// it returns the negotiate base URL once snapshots are served.
func startCosmosWorker(t *testing.T, srv *cosmostest.Server, run cosmosRun) string {
	t.Helper()
	hubAddr := testkit.FreeAddr(t)
	shadow := ""
	if run.shadowURL != "" {
		shadow = fmt.Sprintf("\n  shadowStore: {url: %q}", run.shadowURL)
	}
	if run.startFrom == "" {
		run.startFrom = "beginning"
	}
	yaml := fmt.Sprintf(`
source:
  cosmos: {%sendpoint: %q, key: %q, database: %s, container: %s, startFrom: %s, pollInterval: 20ms, deleteField: /_deleted}
lease: {store: memory, acquireInterval: 200ms, renewInterval: 500ms, expiry: 5s}
mappings:
  - {collection: %s, hub: orders, group: "tenant-{/tenant}"}
publish:
  target: hub%s
hub:
  listen: %q
  accessKey: %q
  negotiate:
    path: /api
    auth: {jwt: {hs256Secret: %q, issuer: %s, audience: %s}}
    groups: ["tenant-{claims.tid}"]
`, run.extra, srv.URL(), srv.Key(), cosmosDB, cosmosColl, run.startFrom, cosmosColl, shadow, hubAddr, hubAccessKey, appSecret, appIssuer, appAudience)
	cfg, err := config.Parse([]byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	testkit.Run(t, func(ctx context.Context) error {
		return worker.Run(ctx, cfg, worker.Options{Logger: log, Registry: run.registry})
	})
	base := "http://" + hubAddr + "/api"
	// Snapshots answer 503 until the container is open and its ranges
	// stream; a one-document read of a missing id then answers 404.
	testkit.Until(t, 30*time.Second, "snapshots to be served", func() bool {
		status, _, _, err := get(base+"/snapshot?hub=orders&collection="+cosmosColl+"&id=-1", appToken("probe", "probe"))
		return err == nil && status == http.StatusNotFound
	})
	return base
}

// cosmosWriter changes documents at random: creates, updates (arrays that
// grow and shrink, nested objects, numbers), tenant moves through the
// routing field, soft deletes (hard-deleting the flagged documents later).
type cosmosWriter struct {
	t       *testing.T
	srv     *cosmostest.Server
	rng     *rand.Rand
	tenants []string
	seq     int
	live    []map[string]any
	flagged []flagged
}

type flagged struct {
	doc map[string]any
	at  time.Time
}

func (w *cosmosWriter) put(doc map[string]any) {
	if _, err := w.srv.Upsert(cosmosDB, cosmosColl, doc); err != nil {
		w.t.Error(err)
	}
}

func (w *cosmosWriter) step() {
	r := w.rng.IntN(100)
	switch {
	case r < 20 || len(w.live) < 20:
		w.seq++
		doc := map[string]any{"id": fmt.Sprintf("o%05d", w.seq), "pk": fmt.Sprintf("p%d", w.seq%97),
			"tenant": w.tenants[w.rng.IntN(len(w.tenants))], "qty": 1, "price": 12.5, "lines": []any{},
			"customer": map[string]any{"name": fmt.Sprintf("c%d", w.rng.IntN(50)), "vip": false}}
		w.live = append(w.live, doc)
		w.put(doc)
	case r < 75:
		doc := w.live[w.rng.IntN(len(w.live))]
		doc["qty"] = doc["qty"].(int) + 1
		lines := append([]any(nil), doc["lines"].([]any)...)
		if len(lines) > 0 && w.rng.IntN(3) == 0 {
			lines = lines[1:]
		} else {
			lines = append(lines, map[string]any{"sku": fmt.Sprintf("s%d", w.rng.IntN(100)), "n": w.rng.IntN(5)})
		}
		doc["lines"] = lines
		if w.rng.IntN(4) == 0 {
			doc["customer"] = map[string]any{"name": fmt.Sprintf("c%d", w.rng.IntN(50)), "vip": w.rng.IntN(2) == 0}
		}
		w.put(doc)
	case r < 88:
		doc := w.live[w.rng.IntN(len(w.live))]
		doc["tenant"] = w.tenants[w.rng.IntN(len(w.tenants))]
		w.put(doc)
	case r < 96:
		i := w.rng.IntN(len(w.live))
		doc := w.live[i]
		w.live = append(w.live[:i], w.live[i+1:]...)
		doc["_deleted"] = true
		w.flagged = append(w.flagged, flagged{doc: doc, at: time.Now()})
		w.put(doc)
	case len(w.flagged) > 0 && time.Since(w.flagged[0].at) > 2*time.Second:
		// The latest-version feed never shows a hard delete: only a
		// document flagged long before (and so streamed as deleted) is
		// removed for good.
		doc := w.flagged[0].doc
		w.flagged = w.flagged[1:]
		if err := w.srv.Delete(cosmosDB, cosmosColl, doc["pk"], doc["id"].(string)); err != nil {
			w.t.Error(err)
		}
	}
}

// cosmosTenantDocs reads the container through the SDK and returns each
// tenant's live documents as the stream sends them: system fields _rid,
// _self and _attachments removed (_lsn is not in query results), _etag and
// _ts kept; soft-deleted documents left out.
func cosmosTenantDocs(t *testing.T, client *azcosmos.Client) map[string]map[string]any {
	t.Helper()
	c, err := client.NewContainer(cosmosDB, cosmosColl)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	pager := c.NewQueryItemsPager("SELECT * FROM c", azcosmos.NewPartitionKey(), nil)
	for pager.More() {
		resp, err := pager.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, item := range resp.Items {
			var doc map[string]any
			d := json.NewDecoder(bytes.NewReader(item))
			d.UseNumber()
			if err := d.Decode(&doc); err != nil {
				t.Fatal(err)
			}
			if doc["_deleted"] == true {
				continue
			}
			for _, f := range []string{"_lsn", "_rid", "_self", "_attachments"} {
				delete(doc, f)
			}
			b, _ := json.Marshal(doc)
			tn := doc["tenant"].(string)
			if out[tn] == nil {
				out[tn] = map[string]any{}
			}
			out[tn][cosmosColl+"/"+doc["id"].(string)] = testkit.NormJSON(t, b)
		}
	}
	return out
}

// TestCosmosSnapshotDifferential is TestSnapshotDifferential on Cosmos DB:
// a writer changes documents of the emulator at a steady rate (creates,
// updates, tenant moves through the routing field, soft deletes) while 20
// clients of @changecast/client join at random moments. Each client builds
// its replica only from the snapshot (read from the change feed, at _lsn
// versions the stream publishes) and live messages. At the end every
// replica equals its tenant's documents exactly, and no client needed a
// refetch.
//
// In "split", a feed range splits mid-run. Its child leases start new
// pipelines with empty shadows, and latest-version Cosmos has no
// before-images: a document whose first change after the split moves it
// to another tenant must still reach its old group as a delete. In one
// process the worker's in-memory shadow store carries the last published
// version and audience from the parent's pipeline to the children;
// "split-pgshadow" runs the same with publish.shadowStore (a PostgreSQL
// table, what carries them across instances and restarts).
func TestCosmosSnapshotDifferential(t *testing.T) {
	for _, name := range []string{"moves", "split", "split-pgshadow"} {
		t.Run(name, func(t *testing.T) {
			testkit.NeedNode(t, "test/node", "@microsoft/signalr")
			shadowURL := ""
			if name == "split-pgshadow" {
				shadowURL = testkit.Database(t)
			}
			t.Log(cosmosDifferential(t, cosmosDiff{run: cosmosRun{shadowURL: shadowURL}, split: name != "moves"}))
		})
	}
}

// cosmosDiff is one run of cosmosDifferential.
type cosmosDiff struct {
	run   cosmosRun
	split bool // a feed range splits mid-run
	// preexisting is how many live documents exist before the worker
	// starts; held, how many clients start before the writer does (the
	// others join while it runs).
	preexisting, held int
	drops             bool // clients drop their connections now and then
}

// cosmosDifferential runs a writer on the emulator (about 600 changes a
// second for six seconds) while 20 clients of @changecast/client join
// within four seconds, and waits until every replica equals its tenant's
// documents. It returns the summary of the clients' reports.
func cosmosDifferential(t *testing.T, d cosmosDiff) string {
	srv := cosmostest.Start(t, emulator.WithPartitions(2))
	if err := srv.CreateContainer(cosmosDB, cosmosColl, emulator.ContainerSpec{PartitionKeyPaths: []string{"/pk"}, Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	tenants := []string{"t0", "t1", "t2", "t3"}
	seed := testkit.Seed(t)
	wr := &cosmosWriter{t: t, srv: srv, rng: rand.New(rand.NewPCG(seed, 3)), tenants: tenants}
	// Documents before anyone connects, so the first snapshots are not
	// empty.
	for range 300 {
		wr.step()
	}
	for len(wr.live) < d.preexisting {
		wr.step()
	}
	base := startCosmosWorker(t, srv, d.run)
	clients := startClients(t, base, 20, tenants, 4*time.Second)
	if d.held > 0 {
		clients.waitStarted(d.held, 30*time.Second)
	}

	// With split, a range splits after two seconds; with drops, a client
	// drops every 300 ms once all have started (from the fifth second on).
	rng := rand.New(rand.NewPCG(seed, 6))
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	start := time.Now()
	split, dropping, nextDrop := d.split, false, start.Add(4500*time.Millisecond)
	drops, lastDrop := 0, map[int]time.Time{}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
write:
	for {
		select {
		case <-ctx.Done():
			break write
		case <-tick.C:
			for range 6 {
				wr.step()
			}
			if d.drops && !dropping && time.Now().After(nextDrop) {
				// A drop while a client is still starting (or catching up
				// after an earlier drop) makes @changecast/client run two
				// catch-ups at once, which it does not survive ("held is
				// not iterable", reported): drop live clients only.
				clients.waitStarted(20, 30*time.Second)
				dropping = true
			}
			if i := rng.IntN(20); dropping && time.Now().After(nextDrop) && time.Since(lastDrop[i]) > 3*time.Second {
				clients.drop(i, time.Duration(200+rng.IntN(800))*time.Millisecond)
				lastDrop[i] = time.Now()
				drops++
				nextDrop = time.Now().Add(150 * time.Millisecond)
			}
			if split && time.Since(start) > 2*time.Second {
				split = false
				rs, err := srv.PartitionKeyRanges(cosmosDB, cosmosColl)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := srv.Split(cosmosDB, cosmosColl, rs[0].ID); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	clients.waitStarted(20, 30*time.Second)

	var reports []clientReport
	sdk := srv.Client(t)
	testkit.Eventually(t, 30*time.Second, "every replica to equal its tenant's documents", func() string {
		reports = clients.dump()
		return diffClients(t, reports, cosmosTenantDocs(t, sdk))
	})
	summary := checkReports(t, reports)
	if d.drops && drops == 0 {
		t.Error("no client dropped its connection: the run did not exercise catch-up")
	}
	rs, _ := srv.PartitionKeyRanges(cosmosDB, cosmosColl)
	return fmt.Sprintf("%s; %d drops; %d feed ranges", summary, drops, len(rs))
}
