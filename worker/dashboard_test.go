package worker

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/changefeed/cosmos"
	"github.com/changecast/changecast/changefeed/postgres"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/snapshot"
)

// describing is a Registerer that keeps the names of what is registered,
// labelled or not (a Gather shows a vector only once it has a child).
type describing struct{ names map[string]bool }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (d *describing) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		if m := fqName.FindStringSubmatch(desc.String()); m != nil {
			d.names[m[1]] = true
		}
	}
	return nil
}

func (d *describing) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		d.Register(c)
	}
}

func (d *describing) Unregister(prometheus.Collector) bool { return true }

// exportedMetrics are the names of every metric a worker registers, with
// either source: the constructors newSource and mountEndpoints call.
func exportedMetrics() map[string]bool {
	d := &describing{names: map[string]bool{}}
	postgres.NewMetrics(d)
	cosmos.NewMetrics(d)
	publish.NewMetrics(d)
	changefeed.NewMetrics(d)
	snapshot.NewMetrics(d)
	return d.names
}

// TestDashboardMetricsExist: every changecast metric the Grafana dashboard
// (deploy/grafana/changecast.json) queries is one changecast exports (a
// histogram's through _bucket, _count or _sum), and it shows the end-to-end
// lag.
func TestDashboardMetricsExist(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "deploy", "grafana", "changecast.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct{ List []struct{ Query any } }
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	var exprs []string
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if q, ok := v.Query.(string); ok {
			exprs = append(exprs, q)
		}
	}
	have := exportedMetrics()
	if !have["changecast_e2e_lag_seconds"] || !have["changecast_stream_lag_seconds"] {
		t.Fatalf("the registered metrics %v lack the lag metrics", have)
	}
	used := map[string]bool{}
	name := regexp.MustCompile(`\bchangecast_[a-z0-9_]+`)
	for _, e := range exprs {
		for _, n := range name.FindAllString(e, -1) {
			used[n] = true
		}
	}
	if len(used) < 10 {
		t.Fatalf("the dashboard names only %d changecast metrics: %v", len(used), used)
	}
	var missing []string
	for n := range used {
		base := n
		for _, suf := range []string{"_bucket", "_count", "_sum"} {
			if b, ok := strings.CutSuffix(n, suf); ok && have[b] {
				base = b
			}
		}
		if !have[base] {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the dashboard queries metrics changecast does not export: %v", missing)
	}
	if !used["changecast_e2e_lag_seconds_bucket"] || !used["changecast_stream_lag_seconds"] {
		t.Errorf("the dashboard does not show the end-to-end and stream lag")
	}
}
