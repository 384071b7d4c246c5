package chaos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	emulator "github.com/changecast/changecast/emulator/cosmos"
	"github.com/changecast/changecast/emulator/cosmos/cosmostest"
	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/lease"
	"github.com/changecast/changecast/lease/cosmosstore"
)

// anyNodeYAML is one worker of a two-worker deployment (issue 21): the
// PostgreSQL lease shared, the history in Redis, each worker's built-in
// hub a node of the Redis backplane, and the other worker listed in
// hub.peers so that the standby answers snapshots too.
const anyNodeYAML = `
source:
  postgres: {url: "{{DB}}", slot: anynode, publication: anynode, tables: [public.orders], heartbeat: 1s, statusInterval: 500ms}
lease:
  store: postgres
  owner: "{{OWNER}}"
  acquireInterval: 500ms
  renewInterval: 1s
  expiry: 3s
history:
  store: redis
  redis: {url: "{{REDIS}}", prefix: "{{PREFIX}}:history"}
mappings:
  - {collection: public.orders, hub: orders, group: "tenant-{/tenant}"}
publish:
  target: hub
  batch: {maxDelay: 20ms}
` + anyNodeHubYAML

// anyNodeHubYAML is the hub section of both: each worker's built-in hub
// a node of the Redis backplane, and every worker in hub.peers.
const anyNodeHubYAML = `hub:
  listen: "{{HUB_LISTEN}}"
  accessKey: "${CHANGECAST_HUB_ACCESS_KEY}"
  peers: [{{PEERS}}]
  backplane:
    redis: {url: "{{REDIS}}", prefix: "{{PREFIX}}:hub"}
  negotiate:
    path: /api
    auth: {jwt: {hs256Secret: "{{APP_SECRET}}", issuer: "{{APP_ISSUER}}", audience: "{{APP_AUDIENCE}}"}}
    groups: ["tenant-{claims.tid}"]
server:
  listen: "{{SERVER_LISTEN}}"
`

// TestEveryWorkerServesSnapshots is issue 21's proof on PostgreSQL: with
// two workers, a client that reaches the standby loads its snapshot at
// once (the standby forwards it to the streaming worker), and clients on
// both workers end exact through a SIGKILL of the streaming one, while a
// writer runs.
func TestEveryWorkerServesSnapshots(t *testing.T) {
	testkit.Integration(t, "PostgreSQL binaries (scripts/pg.sh), Redis (CHANGECAST_REDIS_URL), Node.js and the npm packages of test/node and clients/js")
	redisURL := testkit.Redis(t)
	testkit.NeedNode(t, "test/node", "@microsoft/signalr")
	testkit.NeedNode(t, "clients/js", "fast-json-patch")
	t.Parallel()
	changecastBinary(t)

	dbURL := testkit.Database(t)
	db := testkit.Connect(t, dbURL)
	testkit.CreateWorkloadTables(t, db, true, "public.orders")
	db.Close(context.Background())

	dir := logDir(t)
	slots := []*workerSlot{newWorkerSlot(t, dir, "w1"), newWorkerSlot(t, dir, "w2")}
	peers := make([]string, len(slots))
	for i, s := range slots {
		peers[i] = `"http://` + s.hub + `"`
	}
	yaml := strings.NewReplacer("{{DB}}", dbURL, "{{REDIS}}", redisURL, "{{PREFIX}}", testkit.RedisPrefix(t, redisURL),
		"{{PEERS}}", strings.Join(peers, ", "),
		"{{APP_SECRET}}", appSecret, "{{APP_ISSUER}}", appIssuer, "{{APP_AUDIENCE}}", appAudience).Replace(anyNodeYAML)
	validateConfig(t, dir, yaml)
	slots[0].start(t, yaml)
	probe := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	ready := func(s *workerSlot) bool {
		resp, err := probe.Get("http://" + s.server + "/readyz")
		if err != nil {
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	// streams tells whether s holds the slot's lease (and answers ready):
	// with hub.peers a standby is ready too.
	ldb := testkit.Connect(t, dbURL)
	streams := func(s *workerSlot) bool {
		var owner string
		err := ldb.QueryRow(context.Background(), `SELECT owner FROM changecast_leases WHERE renewed_at > now() - interval '3 seconds'`).Scan(&owner)
		return err == nil && owner == s.owner() && ready(s)
	}
	// w1 takes the stream first, so w2 is the standby.
	testkit.Until(t, 60*time.Second, "w1 to stream", func() bool { return streams(slots[0]) })
	slots[1].start(t, yaml)
	leader, standby := slots[0], slots[1]

	wl := testkit.NewWorkload(uint64(time.Now().UnixNano()), "public.orders")
	ctx := context.Background()
	wdb, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wdb.Close(ctx) })
	if err := wl.Run(wdb, 500); err != nil {
		t.Fatal(err)
	}

	// The standby answers a snapshot while the leader holds the stream:
	// no failover, no minutes of 503.
	snapshot := func(s *workerSlot, tenant string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+s.hub+"/api/snapshot?hub="+hubName, nil)
		req.Header.Set("Authorization", "Bearer "+appToken(t, "probe", tenant))
		resp, err := probe.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// Until the standby serves at all (its process starting up).
	testkit.Until(t, 30*time.Second, "w2 to answer", func() bool {
		st, _ := snapshot(standby, "t0")
		return st != 0
	})
	start := time.Now()
	st, body := snapshot(standby, "t0")
	if st != http.StatusOK {
		t.Fatalf("the standby answered %d %s", st, body)
	}
	if streams(standby) || !streams(leader) {
		t.Fatal("the standby took the stream; the test proves nothing")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the standby took %v to answer", d)
	}
	if want, _ := snapshot(leader, "t0"); want != http.StatusOK {
		t.Fatalf("the leader answered %d", want)
	}
	t.Logf("the standby served the snapshot in %v", time.Since(start).Round(time.Millisecond))

	// Clients on both workers: the standby's clients load their
	// snapshots through it while the leader streams.
	final := testkit.Connect(t, dbURL)
	clientsThroughAKill(t, dir, slots, func() error { return wl.Run(wdb, 1) }, func() {
		if !streams(leader) {
			t.Fatal("the standby took the stream before its clients started; the test proves nothing")
		}
		// It serves clients, so it is ready (a load balancer sends it some).
		if !ready(standby) {
			t.Fatal("the standby, which serves clients through hub.peers, is not ready")
		}
		t.Logf("SIGKILL %s (streaming)", leader.name)
		leader.p.kill()
		testkit.Until(t, 30*time.Second, "w2 to take the stream", func() bool { return streams(standby) })
		leader.start(t, yaml) // back, as a standby now
		testkit.Until(t, 30*time.Second, "w1 to answer again", func() bool {
			st, _ := snapshot(leader, "t1")
			return st == http.StatusOK
		})
	}, func() map[string]map[string]row {
		return rowsOf(t, testkit.DBDocs(t, final, "public.orders", "id"), func(d map[string]any) string {
			tn, _ := d["tenant"].(string)
			return tn
		})
	})
}

// clientsThroughAKill starts six clients on each worker (each negotiates,
// loads its snapshot and catches up there), runs step 40 times a second,
// calls kill after 100 steps, and once 100 more ran checks that every
// replica equals rows.
func clientsThroughAKill(t *testing.T, dir string, slots []*workerSlot, step func() error, kill func(), rows func() map[string]map[string]row) {
	t.Helper()
	ncs := make([]*nodeClients, len(slots))
	for i, s := range slots {
		ncs[i] = startClients(t, clientsConfig{base: "http://" + s.hub + "/api", hubURL: "http://" + slots[0].hub, n: 6,
			tenants: []string{"t0", "t1", "t2", "t3"}, join: time.Second, logPath: filepath.Join(dir, fmt.Sprintf("clients-%s.log", s.name))})
	}
	for _, nc := range ncs {
		nc.waitStarted(60 * time.Second)
	}
	wctx, stopWriter := context.WithCancel(context.Background())
	var ws writerStats
	writer := testkit.Go(t, func() error {
		steady(wctx, 40, &ws, step, func() error { return nil })
		return nil
	})
	writes := func(n int64, when string) {
		from := ws.txs.Load()
		testkit.Until(t, 30*time.Second, fmt.Sprintf("%d writes %s", n, when), func() bool { return ws.txs.Load() >= from+n })
	}
	writes(100, "before the kill")
	kill()
	writes(100, "after the kill")
	stopWriter()
	testkit.Recv(t, writer, time.Minute, "the writer to stop")
	t.Logf("writer: %d writes, %d failed", ws.txs.Load(), ws.errors.Load())
	for i, nc := range ncs {
		t.Logf("clients of %s:", slots[i].name)
		converge(t, nc, 60*time.Second, rows)
	}
}

// anyNodeCosmosYAML: two Cosmos DB workers splitting the ranges through
// the lease container, otherwise as anyNodeYAML (no peers needed: every
// worker reads Cosmos snapshots itself, the streams' positions from the
// leases; the test gives none, so that they are not what serves).
const anyNodeCosmosYAML = `
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
  processor: anynode
  owner: "{{OWNER}}"
  cosmos: {database: app, container: leases, createIfMissing: true}
  acquireInterval: 500ms
  renewInterval: 1s
  expiry: 3s
history:
  store: redis
  redis: {url: "{{REDIS}}", prefix: "{{PREFIX}}:history"}
mappings:
  - {collection: orders, hub: orders, group: "tenant-{/tenant}"}
publish:
  target: hub
  batch: {maxDelay: 20ms}
  shadowStore: {url: "{{SHADOW_DB}}", table: changecast_shadow}
` + anyNodeHubYAML

// TestEveryWorkerServesSnapshotsCosmos: two Cosmos DB workers, each
// holding one of the two ranges, each serve whole snapshots (documents of
// both ranges); clients on both end exact through a SIGKILL of one.
func TestEveryWorkerServesSnapshotsCosmos(t *testing.T) {
	testkit.Integration(t, "Redis (CHANGECAST_REDIS_URL), PostgreSQL (CHANGECAST_PG_URL, the shadow store), Node.js and the npm packages of test/node and clients/js")
	redisURL := testkit.Redis(t)
	shadowDB := testkit.Database(t)
	testkit.NeedNode(t, "test/node", "@microsoft/signalr")
	testkit.NeedNode(t, "clients/js", "fast-json-patch")
	t.Parallel()
	changecastBinary(t)

	emu := cosmostest.Start(t, emulator.WithPartitions(2), emulator.WithDefaultPartitionKeyPath("/id"))
	if err := emu.CreateContainer("app", "orders", emulator.ContainerSpec{PartitionKeyPaths: []string{"/id"}, Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	dir := logDir(t)
	yaml := strings.NewReplacer("{{ENDPOINT}}", emu.URL(), "{{KEY}}", emu.Key(), "{{REDIS}}", redisURL,
		"{{PREFIX}}", testkit.RedisPrefix(t, redisURL), "{{SHADOW_DB}}", shadowDB, "{{PEERS}}", "",
		"{{APP_SECRET}}", appSecret, "{{APP_ISSUER}}", appIssuer, "{{APP_AUDIENCE}}", appAudience).Replace(anyNodeCosmosYAML)
	validateConfig(t, dir, yaml)
	slots := []*workerSlot{newWorkerSlot(t, dir, "w1"), newWorkerSlot(t, dir, "w2")}
	for _, s := range slots {
		s.start(t, yaml)
	}
	ctx := context.Background()
	wr := newCosmosWriter(uint64(time.Now().UnixNano()), emu.Server)
	for range 300 {
		if err := wr.step(); err != nil {
			t.Fatal(err)
		}
	}

	// Each worker holds one range.
	var store *cosmosstore.Store
	testkit.Eventually(t, 60*time.Second, "each worker to hold one range", func() string {
		if store == nil {
			s, err := cosmosstore.New(ctx, emu.Client(t), "app", "leases", cosmosstore.Options{})
			if err != nil {
				return err.Error() // the workers create it
			}
			store = s
		}
		held := rangesByOwner(t, store)
		if len(held) != 2 || held[""] != 0 {
			return fmt.Sprintf("ranges by owner: %v", held)
		}
		return ""
	})

	// Both answer whole snapshots: every document of a tenant, from both ranges.
	container, err := emu.Client(t).NewContainer("app", "orders")
	if err != nil {
		t.Fatal(err)
	}
	want := rowsOf(t, wr.read(t, container), cosmosTenant)["t0"]
	probe := &http.Client{Timeout: 40 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, s := range slots {
		req, _ := http.NewRequest("GET", "http://"+s.hub+"/api/snapshot?hub="+hubName+"&limit=10000", nil)
		req.Header.Set("Authorization", "Bearer "+appToken(t, "probe", "t0"))
		resp, err := probe.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Docs []struct {
				Collection, ID string
				Deleted        bool
			} `json:"docs"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil {
			t.Fatalf("%s answered %d (%v)", s.name, resp.StatusCode, err)
		}
		got := 0
		for _, d := range page.Docs {
			if d.Deleted {
				continue // a soft-deleted document: the snapshot says so
			}
			if _, ok := want[d.Collection+"/"+d.ID]; !ok {
				t.Fatalf("%s's snapshot of t0 has %s/%s, not a t0 document", s.name, d.Collection, d.ID)
			}
			got++
		}
		if got != len(want) {
			t.Fatalf("%s's snapshot of t0 has %d documents, the container %d", s.name, got, len(want))
		}
	}

	clientsThroughAKill(t, dir, slots, wr.step, func() {
		t.Logf("SIGKILL %s", slots[0].name)
		slots[0].p.kill()
		testkit.Eventually(t, 30*time.Second, "w2 to take both ranges", func() string {
			if held := rangesByOwner(t, store); held[slots[1].owner()] != 2 {
				return fmt.Sprintf("ranges by owner: %v", held)
			}
			return ""
		})
		slots[0].start(t, yaml)
	}, func() map[string]map[string]row {
		return rowsOf(t, wr.read(t, container), cosmosTenant)
	})
}

// rangesByOwner counts the ranges each owner holds ("" for none).
func rangesByOwner(t *testing.T, store *cosmosstore.Store) map[string]int {
	ls, err := store.List(context.Background(), "")
	if err != nil {
		t.Logf("list the leases: %v", err)
		return nil
	}
	held := map[string]int{}
	for _, l := range ls {
		if strings.Contains(l.ID, lease.Separator) && !l.Range.IsZero() {
			held[l.Owner]++
		}
	}
	return held
}

// cosmosTenant is the group of a document the Cosmos writer wrote ("" for
// a soft-deleted one).
func cosmosTenant(d map[string]any) string {
	if del, _ := d["_deleted"].(bool); del {
		return ""
	}
	tn, _ := d["tenant"].(string)
	return tn
}

// owner is the lease owner of the slot's current process.
func (w *workerSlot) owner() string { return fmt.Sprintf("%s-%d", w.name, w.gen) }
