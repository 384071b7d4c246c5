package sdk_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	emulator "github.com/changecast/changecast/emulator/cosmos"
	"github.com/changecast/changecast/emulator/cosmos/cosmostest"
)

// TestCosmosJavaScriptSDK: the official @azure/cosmos client works against
// the Cosmos DB emulator for the calls it supports, not only azcosmos.
func TestCosmosJavaScriptSDK(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@azure", "cosmos")); err != nil {
		t.Fatalf("test/node/node_modules lacks @azure/cosmos: run scripts/setup.sh (or npm ci --prefix test/node): %v", err)
	}
	srv := cosmostest.Start(t, emulator.WithPartitions(2))
	cmd := exec.Command("node", "--test", "cosmos.test.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "COSMOS_ENDPOINT="+srv.URL(), "COSMOS_KEY="+srv.Key())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test cosmos.test.mjs: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
