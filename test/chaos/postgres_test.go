package chaos_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/changecast/changecast/internal/testkit"
)

// pgWorkerYAML is a PostgreSQL worker of the chaos run. The lease is
// short (a standby takes over within 3 s), the history small in age
// (15 s: a client away for 30 s must resync, one away for a few seconds
// catches up).
const pgWorkerYAML = `
source:
  postgres: {url: "{{DB}}", slot: chaos, publication: chaos, tables: [public.orders], heartbeat: 1s, statusInterval: 500ms}
lease:
  store: postgres
  owner: "{{OWNER}}"
  acquireInterval: 500ms
  renewInterval: 1s
  expiry: 3s
history:
  store: redis
  redis: {url: "{{REDIS}}", prefix: "{{PREFIX}}"}
  maxAge: "{{MAX_AGE}}"
mappings:
  - {collection: public.orders, hub: orders, group: "tenant-{/tenant}"}
publish:
  target: signalr
  signalr: {connectionString: "Endpoint={{HUB}};AccessKey=${CHANGECAST_HUB_ACCESS_KEY};Version=1.0;"}
  batch: {maxDelay: 20ms}
hub:
  listen: "{{HUB_LISTEN}}"
  negotiate:
    path: /api
    auth: {jwt: {hs256Secret: "{{APP_SECRET}}", issuer: "{{APP_ISSUER}}", audience: "{{APP_AUDIENCE}}"}}
    groups: ["tenant-{claims.tid}"]
server:
  listen: "{{SERVER_LISTEN}}"
`

// TestChaosPostgres is the chaos proof on PostgreSQL (see the package
// comment): at the end every client's replica equals its tenant's rows
// exactly, after kills of the active worker, a PostgreSQL restart and
// client drops, some longer than the history keeps.
func TestChaosPostgres(t *testing.T) {
	testkit.Integration(t, "PostgreSQL binaries (scripts/pg.sh), Redis (CHANGECAST_REDIS_URL), Node.js and the npm packages of test/node and clients/js; make test or make chaos provide them")
	redisURL := testkit.Redis(t)
	testkit.NeedNode(t, "test/node", "@microsoft/signalr")
	testkit.NeedNode(t, "clients/js", "fast-json-patch")
	t.Parallel()
	s := loadSettings(t)
	changecastBinary(t)

	cluster := testkit.PrivateCluster(t)
	base := cluster.URL
	dbURL := testkit.DatabaseOn(t, base)
	db := testkit.Connect(t, dbURL)
	testkit.CreateWorkloadTables(t, db, true, "public.orders")
	db.Close(context.Background())

	dir := logDir(t)
	hubURL := startHub(t, dir)
	yaml := strings.NewReplacer("{{DB}}", dbURL, "{{REDIS}}", redisURL, "{{PREFIX}}", testkit.RedisPrefix(t, redisURL)+":history",
		"{{HUB}}", hubURL, "{{APP_SECRET}}", appSecret, "{{APP_ISSUER}}", appIssuer, "{{APP_AUDIENCE}}", appAudience, "{{MAX_AGE}}", historyKeeps.String()).Replace(pgWorkerYAML)
	validateConfig(t, dir, yaml)
	slots := []*workerSlot{newWorkerSlot(t, dir, "w1"), newWorkerSlot(t, dir, "w2")}
	for _, w := range slots {
		w.start(t, yaml)
	}
	bal := startBalancer(t, slots, true)
	waitServing(t, bal)

	// Rows before anyone connects, so the first snapshots are not empty.
	ctx := context.Background()
	wl := testkit.NewWorkload(s.seed, "public.orders")
	wdb, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	if err := wl.Run(wdb, 2000); err != nil {
		t.Fatal(err)
	}
	tenants := []string{"t0", "t1", "t2", "t3"}
	nc := startClients(t, clientsConfig{base: bal.URL, hubURL: hubURL, n: 20, tenants: tenants, join: 3 * time.Second,
		logPath: filepath.Join(dir, "clients.log")})
	nc.waitStarted(60 * time.Second)

	plan := makePlan(s.seed+1, planConfig{duration: s.duration, clients: 20, workers: len(slots), killActive: true, pgRestart: true,
		long: []int{1, 6, 11}, longAway: 30 * time.Second})
	t.Log(describe(plan))

	// The writer: a steady rate through everything, reconnecting after
	// the PostgreSQL restart.
	var ws writerStats
	wctx, stopWriter := context.WithTimeout(ctx, s.duration)
	defer stopWriter()
	writer := testkit.Go(t, func() error {
		defer func() { wdb.Close(ctx) }()
		steady(wctx, s.rate, &ws, func() error { return wl.Run(wdb, 1) }, func() error {
			wdb.Close(ctx)
			c, err := pgx.Connect(wctx, dbURL)
			if err != nil {
				return err
			}
			wdb = c
			return nil
		})
		return nil
	})

	c := &chaos{t: t, slots: slots, yaml: yaml, bal: bal, nc: nc,
		pgRestart: cluster.Restart}
	c.run(plan, true)
	testkit.Recv(t, writer, s.duration+time.Minute, "the writer to stop")
	t.Logf("writer: %d transactions, %d failed (%d reconnects); chaos: %d kills, %d restarts, %d PostgreSQL restarts, %d drops",
		ws.txs.Load(), ws.errors.Load(), ws.reconnects.Load(), c.kills, c.restarts, c.pgRestarts, c.drops)
	if f := nc.failedDrops(); len(f) > 0 {
		t.Errorf("the hub's REST API did not close connections: %v", f)
	}

	// Everything up again: the replicas must now reach the rows.
	waitServing(t, bal)
	final := testkit.Connect(t, dbURL)
	tot, reports := converge(t, nc, 30*time.Second, func() map[string]map[string]row {
		return rowsOf(t, testkit.DBDocs(t, final, "public.orders", "id"), func(d map[string]any) string {
			tn, _ := d["tenant"].(string)
			return tn
		})
	})
	tot.exercised(t, s.duration)
	checkRepairs(t, reports, plan, historyKeeps)
	if c.kills != count(plan, evKill) || c.restarts != c.kills || c.pgRestarts != 1 {
		t.Errorf("%d kills, %d restarts, %d PostgreSQL restarts: the schedule planned %d kills and one PostgreSQL restart",
			c.kills, c.restarts, c.pgRestarts, count(plan, evKill))
	}
}
