package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	emulator "github.com/changecast/changecast/emulator/cosmos"
	"github.com/changecast/changecast/emulator/cosmos/cosmostest"
	"github.com/changecast/changecast/internal/testkit"
)

func cosmosConfig(t *testing.T, endpoint, key, container string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf(`
source:
  cosmos: {endpoint: %q, key: %q, database: app, container: %s, startFrom: beginning, pollInterval: 100ms}
mappings: [{collection: %s, hub: h}]
publish: {target: stdout}
`, endpoint, key, container, container)), 0o644)
	return path
}

// TestRunCosmosPermanentErrors: credentials the account refuses and a
// container that does not exist stop `changecast run` with exit code 2
// within 30 seconds, one ERROR line naming the field to fix; failed reads
// of the partition key ranges while the first leases are created are
// retried like every other read.
func TestRunCosmosPermanentErrors(t *testing.T) {
	testkit.Integration(t, "the Cosmos DB emulator in-process and the worker (about 25 s)")
	emu := cosmostest.Start(t)
	ctx := context.Background()
	db, err := emu.Client(t).CreateDatabase(ctx, azcosmos.DatabaseProperties{ID: "app"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := emu.Client(t).NewDatabase(db.DatabaseProperties.ID); err != nil {
		t.Fatal(err)
	}
	appDB, _ := emu.Client(t).NewDatabase("app")
	if _, err := appDB.CreateContainer(ctx, azcosmos.ContainerProperties{ID: "orders",
		PartitionKeyDefinition: azcosmos.PartitionKeyDefinition{Paths: []string{"/pk"}}}, nil); err != nil {
		t.Fatal(err)
	}
	runCfg := func(path string, d time.Duration, stdout *testkit.Buffer) (int, string, time.Duration) {
		rctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		var errb bytes.Buffer
		start := time.Now()
		code := run(rctx, []string{"run", "-c", path}, stdout, &errb)
		return code, errb.String(), time.Since(start)
	}

	t.Run("refused key", func(t *testing.T) {
		wrong := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 64)))
		code, errs, took := runCfg(cosmosConfig(t, emu.URL(), wrong, "orders"), 40*time.Second, &testkit.Buffer{})
		checkPermanent(t, code, errs, took, "source.cosmos.key", "refused the credentials (HTTP 401)")
		if strings.Contains(errs, wrong) {
			t.Errorf("the key is in the output:\n%s", errs)
		}
	})
	t.Run("missing container", func(t *testing.T) {
		code, errs, took := runCfg(cosmosConfig(t, emu.URL(), emu.Key(), "nope"), 40*time.Second, &testkit.Buffer{})
		checkPermanent(t, code, errs, took, "source.cosmos.container", "nope", "does not exist", "create it, or correct")
	})
	t.Run("bootstrap retries a 503", func(t *testing.T) {
		item := []byte(`{"id":"a1","pk":"p","v":1}`)
		c, _ := appDB.NewContainer("orders")
		if _, err := c.CreateItem(ctx, azcosmos.NewPartitionKeyString("p"), item, nil); err != nil {
			t.Fatal(err)
		}
		emu.FailNext(3, 503, emulator.KindPKRanges)
		out := &testkit.Buffer{}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan int, 1)
		var errb testkit.Buffer
		go func() {
			done <- run(rctx, []string{"run", "-c", cosmosConfig(t, emu.URL(), emu.Key(), "orders")}, out, &errb)
		}()
		testkit.Eventually(t, 30*time.Second, "the document after three failed pkranges reads", func() string {
			select {
			case code := <-done:
				t.Fatalf("run exited with %d:\n%s", code, errb.String())
			default:
			}
			if !strings.Contains(out.String(), `"id":"a1"`) {
				return "not yet on stdout"
			}
			return ""
		})
		cancel()
		if code := <-done; code != 0 {
			t.Fatalf("exit code %d after a clean stop:\n%s", code, errb.String())
		}
	})
}
