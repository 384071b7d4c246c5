package client_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	emulator "github.com/changecast/changecast/emulator/cosmos"
	"github.com/changecast/changecast/emulator/cosmos/cosmostest"
	"github.com/changecast/changecast/internal/testkit"
)

// TestCosmosStartNowMoves is issue 15's differential proof on Cosmos DB
// with startFrom: now, the .NET processor's default: 400 documents exist
// before the worker starts, so no pipeline has seen them, and the
// latest-version change feed carries no before-image. A writer then
// upserts, moves documents between tenants (the routing field) and
// soft-deletes them; 20 @changecast/client clients join at different
// moments (half before the writer starts, half while it runs) and drop
// their connections now and then (the hub's REST API closes them, and
// they stay away up to 1.5 s), and a feed range splits mid-run. At the end every replica equals its tenant's documents, and
// nothing was unroutable.
//
// "index": the routing index (default) tells each move and soft delete
// the group that held the document (only documents changed after the
// checkpoint a lease starts from, as the split's children do, fall back
// to the hub);
// "no-index": with source.cosmos.routingIndex false, they go to the whole
// hub as deletes (changecast_route_fallback_total counts them), and the
// replicas are exact all the same.
func TestCosmosStartNowMoves(t *testing.T) {
	for _, name := range []string{"index", "no-index"} {
		t.Run(name, func(t *testing.T) {
			testkit.NeedNode(t, "test/node", "@microsoft/signalr")
			extra := ""
			if name == "no-index" {
				extra = "routingIndex: false, "
			}
			cosmosStartNow(t, extra, name == "index")
		})
	}
}

func cosmosStartNow(t *testing.T, extra string, indexed bool) {
	srv := cosmostest.Start(t, emulator.WithPartitions(2))
	if err := srv.CreateContainer(cosmosDB, cosmosColl, emulator.ContainerSpec{PartitionKeyPaths: []string{"/pk"}, Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	tenants := []string{"t0", "t1", "t2", "t3"}
	seed := testkit.Seed(t)
	wr := &cosmosWriter{t: t, srv: srv, rng: rand.New(rand.NewPCG(seed, 5)), tenants: tenants}
	// Enough documents that the first change of many after the start
	// moves them.
	for len(wr.live) < 400 {
		wr.step()
	}
	reg := prometheus.NewRegistry()
	base, hubAddr := startCosmosWorker(t, srv, cosmosRun{startFrom: "now", extra: extra, registry: reg})
	clients := startClients(t, base, 20, tenants, 4*time.Second,
		"CHANGECAST_HUB_URL=http://"+hubAddr, "CHANGECAST_HUB_KEY="+hubAccessKey)
	// Half the clients hold the documents from their snapshots before the
	// writes begin (so their first changes are the moves no pipeline can
	// know the old group of); the others join while the writer runs.
	clients.waitStarted(10, 30*time.Second)

	// About 600 changes a second for six seconds; a client drops every
	// 300 ms from the first second on; a range splits after three.
	rng := rand.New(rand.NewPCG(seed, 6))
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	start := time.Now()
	split, nextDrop := true, start.Add(time.Second)
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
			clients.poll()
			if i := rng.IntN(20); time.Now().After(nextDrop) && clients.started[i] && time.Since(lastDrop[i]) > 3*time.Second {
				// Only a client that is live, and not dropped just before:
				// a drop while the client catches up makes
				// @changecast/client run two catch-ups at once, which it
				// does not survive (a bug of the client, reported).
				clients.drop(i, time.Duration(200+rng.IntN(1300))*time.Millisecond)
				lastDrop[i] = time.Now()
				drops++
				nextDrop = time.Now().Add(300 * time.Millisecond)
			}
			if split && time.Since(start) > 3*time.Second {
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
	if len(clients.dropped) != drops {
		t.Errorf("%d drops sent, %d answered", drops, len(clients.dropped))
	}
	for _, l := range clients.dropped {
		if !strings.HasSuffix(l, " 204") {
			t.Errorf("a drop failed: %s", l)
		}
	}
	unroutable, fallbacks := counter(t, reg, "changecast_unroutable_total"), counter(t, reg, "changecast_route_fallback_total")
	if unroutable != 0 {
		t.Errorf("changecast_unroutable_total = %v", unroutable)
	}
	// Without the index every first change of a document after the start
	// falls back; with it only documents above a checkpoint at a lease's
	// start (the split's children) may.
	if !indexed && fallbacks == 0 {
		t.Error("routingIndex false, and no change fell back to the hub")
	}
	rs, _ := srv.PartitionKeyRanges(cosmosDB, cosmosColl)
	t.Logf("%s; %d drops; %d feed ranges; %v fallbacks", summary, drops, len(rs), fallbacks)
}

// counter is the value of a counter of reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
