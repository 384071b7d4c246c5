package sdk_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	emulator "github.com/changecast/changecast/emulator/cosmos"
	"github.com/changecast/changecast/emulator/cosmos/cosmostest"
	"github.com/changecast/changecast/internal/testkit"
)

// TestCosmosJavaScriptSDK: the official @azure/cosmos client works against
// the Cosmos DB emulator for the calls it supports, not only azcosmos.
func TestCosmosJavaScriptSDK(t *testing.T) {
	node := testkit.NeedNode(t, "test/node", "@azure/cosmos")
	srv := cosmostest.Start(t, emulator.WithPartitions(2))
	cmd := exec.Command(node, "--test", "cosmos.test.mjs")
	cmd.Dir = filepath.Join(testkit.Root(t), "test", "node")
	cmd.Env = append(os.Environ(), "COSMOS_ENDPOINT="+srv.URL(), "COSMOS_KEY="+srv.Key())
	out, err := cmd.CombinedOutput()
	if err != nil {
		// The queries and their headers tell which path the SDK took.
		for _, r := range srv.Requests(emulator.KindQuery, emulator.KindQueryPlan, emulator.KindBatch, emulator.KindOffer) {
			t.Logf("%s %s %s -> %d/%d %v", r.Kind, r.Method, r.Path, r.Status, r.SubStatus, r.Header)
		}
		t.Fatalf("node --test cosmos.test.mjs: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
