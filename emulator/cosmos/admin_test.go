package cosmos_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/changecast/changecast/emulator/cosmos"
	"github.com/changecast/changecast/emulator/cosmos/cosmostest"
)

func TestNewServerRejectsAKeyThatIsNotBase64(t *testing.T) {
	if _, err := cosmos.NewServer(cosmos.WithKey("not base64!")); err == nil {
		t.Fatal("NewServer accepted a key that is not base64")
	}
}

// adminCall sends one admin request and decodes the JSON answer.
func adminCall(t *testing.T, method, url string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
	}
	return resp.StatusCode
}

// The /_admin/ routes are what `changecast emulate cosmos` exposes; they
// act on the same state the SDK sees.
func TestAdminRoutes(t *testing.T) {
	srv := cosmostest.Start(t, cosmos.WithAdminRoutes(true))
	base := srv.URL() + "_admin/"
	if code := adminCall(t, "POST", base+"containers?db=app&coll=orders&pk=/pk&partitions=2", nil); code != http.StatusOK {
		t.Fatalf("create container: %d", code)
	}
	var ranges []cosmos.PartitionKeyRange
	if adminCall(t, "GET", base+"pkranges?db=app&coll=orders", &ranges); len(ranges) != 2 {
		t.Fatalf("pkranges: %+v", ranges)
	}
	var split struct{ Children []string }
	if adminCall(t, "POST", base+"split?db=app&coll=orders&range=0", &split); len(split.Children) != 2 {
		t.Fatalf("split: %+v", split)
	}
	var merged struct{ Merged string }
	if adminCall(t, "POST", base+"merge?db=app&coll=orders&left="+split.Children[0]+"&right="+split.Children[1], &merged); merged.Merged == "" {
		t.Fatal("merge answered no range")
	}
	if code := adminCall(t, "POST", base+"split?db=app&coll=orders&range=0", nil); code != http.StatusBadRequest {
		t.Fatalf("split of a gone range: %d, want 400", code)
	}

	c, _ := srv.Client(t).NewContainer("app", "orders")
	frs, err := c.ReadFeedRanges(ctxT(t), nil)
	if err != nil || len(frs) != 2 {
		t.Fatalf("the SDK sees %d ranges after split and merge (%v), want 2", len(frs), err)
	}
	// One injected 429 on reads: the SDK retries it.
	if code := adminCall(t, "POST", base+"fail?status=429&count=1&kind=read", nil); code != http.StatusOK {
		t.Fatalf("fail: %d", code)
	}
	_, err = c.ReadItem(ctxT(t), azcosmos.NewPartitionKeyString("p"), "missing", nil)
	if statusOf(err) != http.StatusNotFound {
		t.Fatalf("read after one 429: %v, want 404", err)
	}
	var stats map[cosmos.Kind]int
	adminCall(t, "GET", base+"stats", &stats)
	if stats[cosmos.KindRead] != 2 || stats[cosmos.KindPKRanges] == 0 {
		t.Fatalf("stats %v: want 2 reads (one throttled) and the pkranges reads", stats)
	}
	reqs := srv.Requests(cosmos.KindRead)
	if len(reqs) != 2 || reqs[0].Status != http.StatusTooManyRequests || reqs[1].Status != http.StatusNotFound {
		t.Fatalf("reads: %+v", reqs)
	}
}

func TestAdminRoutesAreOffByDefault(t *testing.T) {
	srv := cosmostest.Start(t)
	if code := adminCall(t, "GET", srv.URL()+"_admin/stats", nil); code != http.StatusNotFound {
		t.Fatalf("GET /_admin/stats without WithAdminRoutes: %d, want 404", code)
	}
}

func TestKindOf(t *testing.T) {
	for _, c := range []struct {
		method, path string
		header       map[string]string
		want         cosmos.Kind
	}{
		{"GET", "/", nil, cosmos.KindAccount},
		{"GET", "/dbs/a/colls/b/docs", map[string]string{"A-IM": "Incremental Feed"}, cosmos.KindChangeFeed},
		{"POST", "/dbs/a/colls/b/docs", map[string]string{"x-ms-documentdb-is-upsert": "True"}, cosmos.KindUpsert},
		{"PATCH", "/dbs/a/colls/b/docs/x%2Fy", nil, cosmos.KindPatch},
		{"GET", "/offers", nil, cosmos.KindOffer},
		{"GET", "/triggers", nil, cosmos.KindUnknown},
	} {
		r, _ := http.NewRequest(c.method, "http://emulator"+c.path, strings.NewReader(""))
		for k, v := range c.header {
			r.Header.Set(k, v)
		}
		if got := cosmos.KindOf(r); got != c.want {
			t.Errorf("%s %s: %s, want %s", c.method, c.path, got, c.want)
		}
	}
}
