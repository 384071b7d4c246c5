package cosmostest_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"
	"go.uber.org/goleak"

	"github.com/changecast/changecast/emulator/cosmos"
	"github.com/changecast/changecast/emulator/cosmos/cosmostest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// FailNext's 429s carry the service's throttling headers, the SDK retries
// them, and the request log shows each attempt without its signature.
func TestFailNextAndTheRequestLog(t *testing.T) {
	srv := cosmostest.Start(t, cosmos.WithPartitions(2))
	if !strings.HasPrefix(srv.ConnectionString(), "AccountEndpoint="+srv.URL()+";AccountKey="+cosmos.DefaultKey) {
		t.Fatalf("connection string %q", srv.ConnectionString())
	}
	c, err := srv.Client(t).NewContainer("app", "orders")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv.FailNext(2, http.StatusTooManyRequests, cosmos.KindUpsert)
	if _, err := c.UpsertItem(ctx, azcosmos.NewPartitionKeyString("a"), []byte(`{"id":"a"}`), nil); err != nil {
		t.Fatalf("two 429s should be retried: %v", err)
	}
	reqs := srv.Requests(cosmos.KindUpsert)
	if len(reqs) != 3 || srv.Count(cosmos.KindUpsert) != 3 {
		t.Fatalf("want 3 upserts, log has %d, count %d", len(reqs), srv.Count(cosmos.KindUpsert))
	}
	for i, r := range reqs[:2] {
		if r.Status != http.StatusTooManyRequests || r.SubStatus != 3200 {
			t.Errorf("attempt %d: %d/%d, want 429/3200", i, r.Status, r.SubStatus)
		}
	}
	if r := reqs[2]; r.Status != http.StatusOK && r.Status != http.StatusCreated {
		t.Errorf("last attempt: %d", r.Status)
	}
	if r := reqs[2]; r.Method != http.MethodPost || r.Path != "/dbs/app/colls/orders/docs" ||
		r.Header.Get("Authorization") != "" || r.Header.Get("x-ms-date") == "" {
		t.Errorf("logged request %s %s, headers %v", r.Method, r.Path, r.Header)
	}

	// Direct writes go around HTTP: not logged, not failed.
	srv.FailNext(1, http.StatusServiceUnavailable)
	if _, err := srv.Upsert("app", "orders", map[string]any{"id": "b"}); err != nil {
		t.Fatal(err)
	}
	srv.ClearFaults()
	if n := srv.Count(cosmos.KindUpsert); n != 3 {
		t.Fatalf("a direct upsert was counted: %d", n)
	}
	srv.ResetCounts()
	if srv.Count() != 0 || len(srv.Requests()) != 0 {
		t.Fatal("ResetCounts left requests behind")
	}
}
