package client_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

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
// they stay away up to 1.5 s), and a feed range splits mid-run. At the
// end every replica equals its tenant's documents, and nothing was
// unroutable.
//
// "index": the routing index (default) tells each move and soft delete
// the group that held the document (only documents changed after the
// checkpoint a lease starts from, as the split's children do, fall back
// to the hub); "no-index": with source.cosmos.routingIndex false, they go to the whole
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
	reg := prometheus.NewRegistry()
	// 400 documents, so that the first change of many after the start
	// moves them; half the clients hold them from their snapshots before
	// the writer starts.
	summary := cosmosDifferential(t, cosmosDiff{run: cosmosRun{startFrom: "now", extra: extra, registry: reg},
		split: true, preexisting: 400, held: 10, drops: true})
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
	// The held leases' indexes hold at least the documents that existed
	// before the start and were not deleted since.
	if indexed {
		if docs := counter(t, reg, "changecast_cosmos_routing_index_documents"); docs < 300 {
			t.Errorf("changecast_cosmos_routing_index_documents = %v", docs)
		}
	}
	t.Logf("%s; %v fallbacks", summary, fallbacks)
}

// counter is the value of a counter or gauge of reg (summed over its
// labels).
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
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
			return sum
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
