package chaos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	emulator "github.com/changecast/changecast/emulator/cosmos"
	"github.com/changecast/changecast/emulator/cosmos/cosmostest"
	"github.com/changecast/changecast/internal/testkit"
)

// cosmosWorkerYAML is a Cosmos DB worker of the chaos run: three of them
// share the lease container; the persistent shadow store (PostgreSQL)
// tells a worker that takes a lease over where each document was sent
// last, so a tenant move after a takeover still deletes it from the old
// tenant.
const cosmosWorkerYAML = `
source:
  cosmos:
    endpoint: "{{ENDPOINT}}"
    key: "{{KEY}}"
    database: app
    container: orders
    startFrom: beginning
    pollInterval: 100ms
    deleteField: /_deleted
lease:
  store: cosmos
  processor: chaos
  owner: "{{OWNER}}"
  cosmos: {database: app, container: leases, createIfMissing: true}
  acquireInterval: 500ms
  renewInterval: 1s
  expiry: 3s
history:
  store: redis
  redis: {url: "{{REDIS}}", prefix: "{{PREFIX}}"}
  maxAge: "{{MAX_AGE}}"
mappings:
  - {collection: orders, hub: orders, group: "tenant-{/tenant}"}
publish:
  target: signalr
  signalr: {connectionString: "Endpoint={{HUB}};AccessKey=${CHANGECAST_HUB_ACCESS_KEY};Version=1.0;"}
  batch: {maxDelay: 20ms}
  shadowStore: {url: "{{SHADOW_DB}}", table: changecast_shadow}
hub:
  listen: "{{HUB_LISTEN}}"
  negotiate:
    path: /api
    auth: {jwt: {hs256Secret: "{{APP_SECRET}}", issuer: "{{APP_ISSUER}}", audience: "{{APP_AUDIENCE}}"}}
    groups: ["tenant-{claims.tid}"]
server:
  listen: "{{SERVER_LISTEN}}"
`

// TestChaosCosmos is the chaos proof on the Cosmos DB emulator: three
// workers sharing the lease container, a writer of upserts, tenant moves
// and soft deletes, random SIGKILLs and restarts of workers, a split
// mid-run, and the same 20 clients. The clients build their replicas from
// the Cosmos DB source's snapshots: a worker that answers GET
// {path}/snapshot with 404 or 501 fails the run.
func TestChaosCosmos(t *testing.T) {
	testkit.Integration(t, "Redis (CHANGECAST_REDIS_URL), PostgreSQL (CHANGECAST_PG_URL, the shadow store), Node.js and the npm packages of test/node and clients/js; make test or make chaos provide them")
	redisURL := testkit.Redis(t)
	shadowDB := testkit.Database(t)
	testkit.NeedNode(t, "test/node", "@microsoft/signalr")
	testkit.NeedNode(t, "clients/js", "fast-json-patch")
	t.Parallel()
	s := loadSettings(t)
	changecastBinary(t)

	// The emulator lives in this process: it outlives every worker kill.
	emu := cosmostest.Start(t, emulator.WithPartitions(2), emulator.WithDefaultPartitionKeyPath("/id"))
	if err := emu.CreateContainer("app", "orders", emulator.ContainerSpec{PartitionKeyPaths: []string{"/id"}, Partitions: 2}); err != nil {
		t.Fatal(err)
	}

	dir := logDir(t)
	hubURL := startHub(t, dir)
	yaml := strings.NewReplacer("{{ENDPOINT}}", emu.URL(), "{{KEY}}", emu.Key(), "{{REDIS}}", redisURL,
		"{{PREFIX}}", testkit.RedisPrefix(t, redisURL)+":history", "{{SHADOW_DB}}", shadowDB,
		"{{HUB}}", hubURL, "{{APP_SECRET}}", appSecret, "{{APP_ISSUER}}", appIssuer, "{{APP_AUDIENCE}}", appAudience, "{{MAX_AGE}}", historyKeeps.String()).Replace(cosmosWorkerYAML)
	validateConfig(t, dir, yaml)
	slots := []*workerSlot{newWorkerSlot(t, dir, "w1"), newWorkerSlot(t, dir, "w2"), newWorkerSlot(t, dir, "w3")}
	for _, w := range slots {
		w.start(t, yaml)
	}
	bal := startBalancer(t, slots, false)
	waitServing(t, bal)

	wr := newCosmosWriter(s.seed, emu.Server)
	for range 1000 {
		if err := wr.step(); err != nil {
			t.Fatal(err)
		}
	}
	tenants := []string{"t0", "t1", "t2", "t3"}
	nc := startClients(t, clientsConfig{base: bal.URL, hubURL: hubURL, n: 20, tenants: tenants, join: 3 * time.Second,
		logPath: filepath.Join(dir, "clients.log")})
	nc.waitStarted(60 * time.Second)

	plan := makePlan(s.seed+1, planConfig{duration: s.duration, clients: 20, workers: len(slots), split: true,
		long: []int{1, 6, 11}, longAway: 30 * time.Second})
	t.Log(describe(plan))

	ctx := context.Background()
	var ws writerStats
	wctx, stopWriter := context.WithTimeout(ctx, s.duration)
	defer stopWriter()
	writer := testkit.Go(t, func() error {
		steady(wctx, s.rate, &ws, wr.step, func() error { return nil })
		return nil
	})
	c := &chaos{t: t, slots: slots, yaml: yaml, bal: bal, nc: nc,
		split: func() (string, error) {
			ranges, err := emu.PartitionKeyRanges("app", "orders")
			if err != nil {
				return "", err
			}
			if len(ranges) == 0 {
				return "", fmt.Errorf("no partition key range")
			}
			children, err := emu.Split("app", "orders", ranges[0].ID)
			return fmt.Sprintf("%s → %v", ranges[0].ID, children), err
		}}
	c.run(plan, false)
	testkit.Recv(t, writer, s.duration+time.Minute, "the writer to stop")
	t.Logf("writer: %d upserts, %d failed; chaos: %d kills, %d restarts, %d splits, %d drops",
		ws.txs.Load(), ws.errors.Load(), c.kills, c.restarts, c.splits, c.drops)
	if f := nc.failedDrops(); len(f) > 0 {
		t.Errorf("the hub's REST API did not close connections: %v", f)
	}

	waitServing(t, bal)
	container, err := emu.Client(t).NewContainer("app", "orders")
	if err != nil {
		t.Fatal(err)
	}
	tot, reports := converge(t, nc, 30*time.Second, func() map[string]map[string]row {
		return rowsOf(t, wr.read(t, container), func(d map[string]any) string {
			if del, _ := d["_deleted"].(bool); del {
				return ""
			}
			tn, _ := d["tenant"].(string)
			return tn
		})
	})
	tot.exercised(t, s.duration)
	checkRepairs(t, reports, plan, historyKeeps)
	if c.kills != count(plan, evKill) || c.restarts != c.kills || c.splits != 1 {
		t.Errorf("%d kills, %d restarts, %d splits: the schedule planned %d kills and one split",
			c.kills, c.restarts, c.splits, count(plan, evKill))
	}
}

// cosmosWriter upserts orders into the emulator: new ones, updates of
// plain, nested and larger fields, tenant moves, soft deletes (the
// deleteField flag) and revivals of soft-deleted ones.
type cosmosWriter struct {
	emu *emulator.Server
	mu  sync.Mutex
	rng *rand.Rand
	// docs are the current documents as written (without the system
	// properties the emulator adds), by id.
	docs map[string]map[string]any
	ids  []string
	next int
}

func newCosmosWriter(seed uint64, emu *emulator.Server) *cosmosWriter {
	return &cosmosWriter{emu: emu, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), docs: map[string]map[string]any{}}
}

func (w *cosmosWriter) tenant() string { return "t" + strconv.Itoa(w.rng.IntN(4)) }

func (w *cosmosWriter) step() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := w.rng.IntN(100)
	var d map[string]any
	if len(w.ids) == 0 || k < 25 {
		w.next++
		id := fmt.Sprintf("o-%d", w.next)
		d = map[string]any{"id": id, "tenant": w.tenant(), "n": w.rng.IntN(1000), "status": "new",
			"items": []any{map[string]any{"sku": "s" + strconv.Itoa(w.rng.IntN(50)), "qty": 1 + w.rng.IntN(5)}}}
		w.ids = append(w.ids, id)
		w.docs[id] = d
	} else {
		id := w.ids[w.rng.IntN(len(w.ids))]
		d = clone(w.docs[id])
		deleted, _ := d["_deleted"].(bool)
		switch {
		case deleted: // revive it
			delete(d, "_deleted")
			d["tenant"] = w.tenant()
		case k < 50:
			d["n"] = w.rng.IntN(1000)
		case k < 58:
			d["status"] = []string{"new", "paid", "shipped", "returned"}[w.rng.IntN(4)]
		case k < 66:
			items, _ := d["items"].([]any)
			d["items"] = append(items, map[string]any{"sku": "s" + strconv.Itoa(w.rng.IntN(50)), "qty": 1 + w.rng.IntN(5)})
		case k < 72:
			b := make([]byte, 2048+w.rng.IntN(8192))
			for i := range b {
				b[i] = "abcdefghijklmnopqrstuvwxyz0123456789"[w.rng.IntN(36)]
			}
			d["note"] = string(b)
		case k < 84: // a routing move
			d["tenant"] = w.tenant()
			d["n"] = w.rng.IntN(1000)
		default: // a soft delete
			d["_deleted"] = true
		}
		w.docs[id] = d
	}
	_, err := w.emu.Upsert("app", "orders", d)
	return err
}

func clone(d map[string]any) map[string]any {
	b, _ := json.Marshal(d)
	var out map[string]any
	json.Unmarshal(b, &out)
	return out
}

// read reads every document the writer wrote back from the emulator, as
// the stream sends it (without _lsn, _rid, _self and _attachments).
func (w *cosmosWriter) read(t *testing.T, c *azcosmos.ContainerClient) map[string][]byte {
	t.Helper()
	w.mu.Lock()
	ids := append([]string(nil), w.ids...)
	w.mu.Unlock()
	out := map[string][]byte{}
	for _, id := range ids {
		resp, err := c.ReadItem(context.Background(), azcosmos.NewPartitionKeyString(id), id, nil)
		if err != nil {
			t.Fatalf("read %s: %v", id, err)
		}
		var d map[string]any
		if err := json.Unmarshal(resp.Value, &d); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"_lsn", "_rid", "_self", "_attachments"} {
			delete(d, k)
		}
		b, _ := json.Marshal(d)
		out["orders/"+id] = b
	}
	return out
}
