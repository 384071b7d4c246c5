package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/changecast/changecast/emulator/cosmos"
	"github.com/changecast/changecast/emulator/cosmos/cosmostest"
	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/schema/config"
	"github.com/changecast/changecast/worker"
)

// TestCosmosStatus runs a Cosmos DB worker (the emulator, two feed ranges,
// leases in memory) with the admin API, and checks GET /admin/status: both
// leases owned by this worker, with a position, the changes it published,
// and changecast_e2e_lag_seconds counting every document (from _ts).
func TestCosmosStatus(t *testing.T) {
	emu := cosmostest.Start(t, cosmos.WithPartitions(2), cosmos.WithDefaultPartitionKeyPath("/pk"))
	if err := emu.CreateContainer("app", "orders", cosmos.ContainerSpec{}); err != nil {
		t.Fatal(err)
	}
	const n = 12
	for i := range n {
		if _, err := emu.Upsert("app", "orders", map[string]any{"id": fmt.Sprint("o", i), "pk": fmt.Sprint("k", i)}); err != nil {
			t.Fatal(err)
		}
	}
	ops := testkit.FreeAddr(t)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
source:
  cosmos: {endpoint: %q, key: %q, database: app, container: orders, startFrom: beginning, pollInterval: 50ms}
lease: {store: memory, owner: status-test, acquireInterval: 100ms}
mappings: [{collection: orders, hub: orders}]
publish: {target: stdout}
server: {listen: %q, adminToken: tok}
`, emu.URL(), emu.Key(), ops)), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := testkit.Go(t, func() error {
		return worker.Run(ctx, cfg, worker.Options{Stdout: io.Discard, Logger: slog.New(slog.DiscardHandler)})
	})
	defer func() {
		stop()
		if err := testkit.Recv(t, done, 30*time.Second, "the worker to stop"); err != nil {
			t.Errorf("worker: %v", err)
		}
	}()
	var st struct {
		Source       string
		StreamsError string
		Streams      struct {
			Leases []struct{ Token, Owner, Continuation string }
		}
		Changes []struct{ Collection, ID, Op string }
	}
	testkit.Until(t, 30*time.Second, "every document in the status", func() bool {
		req, _ := http.NewRequest("GET", "http://"+ops+"/admin/status?lag=false", nil)
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&st) != nil {
			return false
		}
		return len(st.Changes) == n
	})
	if st.Source != "cosmos" || st.StreamsError != "" || len(st.Streams.Leases) != 2 {
		t.Fatalf("source %q, streams error %q, leases %+v: want both leases of the memory store", st.Source, st.StreamsError, st.Streams.Leases)
	}
	for _, l := range st.Streams.Leases {
		if l.Owner != "status-test" || !strings.Contains(l.Continuation, "lsn") {
			t.Errorf("lease %+v: want owned by status-test, at a position", l)
		}
	}
	if c := st.Changes[0]; c.Collection != "orders" || c.Op != "upsert" || !strings.HasPrefix(c.ID, "o") {
		t.Errorf("last change %+v", c)
	}
	testkit.Until(t, 10*time.Second, "the lag histogram to count every document", func() bool {
		resp, err := http.Get("http://" + ops + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), fmt.Sprintf(`changecast_e2e_lag_seconds_count{source="cosmos:app/orders"} %d`, n))
	})
}
