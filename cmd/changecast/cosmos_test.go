package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/schema/config"
	"github.com/changecast/changecast/worker"
)

// TestCosmosWorkerAgainstEmulatorProcess builds changecast, starts
// `changecast emulate cosmos` as a subprocess, writes documents through
// azcosmos, and runs the Cosmos worker (with its leases in the emulator)
// until every document is published; then lists the leases and resets them
// to the beginning, which replays everything.
func TestCosmosWorkerAgainstEmulatorProcess(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "changecast")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	emu := exec.Command(bin, "emulate", "cosmos", "--listen", "127.0.0.1:0", "--partitions", "3", "--partition-key", "/pk")
	emuOut, err := emu.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	emu.Stderr = io.Discard
	if err := emu.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	banner := make(chan []string, 1)
	go func() {
		// Read everything so the emulator never blocks on its stdout;
		// Wait only after the pipe is drained.
		re := regexp.MustCompile(`^COSMOS_CONNECTION_STRING=AccountEndpoint=(\S+?);AccountKey=(\S+?);$`)
		sc := bufio.NewScanner(emuOut)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				banner <- m
			}
		}
		close(banner)
		exited <- emu.Wait()
	}()
	defer func() {
		emu.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			emu.Process.Kill()
			<-exited
		}
	}()
	var endpoint, key string
	select {
	case m, ok := <-banner:
		if !ok {
			t.Fatal("emulator exited without printing its connection string")
		}
		endpoint, key = m[1], m[2]
	case <-time.After(15 * time.Second):
		t.Fatal("emulator printed no connection string")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client, err := azcosmos.NewClientFromConnectionString("AccountEndpoint="+endpoint+";AccountKey="+key+";", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, _ := client.NewContainer("app", "orders")
	write := func(prefix string, n int) {
		for i := range n {
			id := fmt.Sprintf("%s%02d", prefix, i)
			body, _ := json.Marshal(map[string]any{"id": id, "pk": "k-" + id, "status": "new", "tenant": i % 3})
			if _, err := c.UpsertItem(ctx, azcosmos.NewPartitionKeyString("k-"+id), body, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("o", 30)

	yaml := fmt.Sprintf(`source:
  cosmos:
    endpoint: %s
    key: "${TEST_COSMOS_KEY}"
    database: app
    container: orders
    startFrom: beginning
    pollInterval: 50ms
lease:
  store: cosmos
  processor: e2e
  cosmos: {database: app, container: leases, createIfMissing: true}
  acquireInterval: 100ms
  renewInterval: 200ms
  expiry: 2s
mappings:
  - collection: orders
    hub: orders
    group: "tenant-{/tenant}"
publish:
  target: stdout
`, endpoint)
	cfgPath := filepath.Join(dir, "cosmos.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_COSMOS_KEY", key)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}

	var out testkit.Buffer
	wctx, stopWorker := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- worker.Run(wctx, cfg, worker.Options{Stdout: &out, Logger: slog.New(slog.DiscardHandler)})
	}()
	defer func() {
		stopWorker()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the worker did not return")
		}
	}()
	waitPublished := func(ids ...string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			s := out.String()
			missing := 0
			for _, id := range ids {
				if !strings.Contains(s, `"id":"`+id+`"`) {
					missing++
				}
			}
			if missing == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d documents not published; stdout:\n%s", missing, len(ids), s)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	var ids []string
	for i := range 30 {
		ids = append(ids, fmt.Sprintf("o%02d", i))
	}
	waitPublished(ids...)
	write("p", 10)
	waitPublished("p00", "p09")
	if !strings.Contains(out.String(), `"source":"cosmos:app/orders"`) || !strings.Contains(out.String(), `"group":"tenant-1"`) {
		t.Fatalf("envelopes lack source or group:\n%s", out.String())
	}

	// changecast leases list shows every lease owned, with a lag.
	var lout, lerr testkit.Buffer
	if code := cmdLeases(ctx, []string{"list", "-c", cfgPath}, &lout, &lerr); code != 0 {
		t.Fatalf("leases list: exit %d: %s", code, lerr.String())
	}
	if n := strings.Count(lout.String(), "lsn "); n != 3 {
		t.Fatalf("leases list shows %d checkpointed leases, want 3:\n%s", n, lout.String())
	}

	// changecast checkpoint reset --to beginning replays everything.
	before := strings.Count(out.String(), `"id":"o00"`)
	var rout, rerr testkit.Buffer
	if code := cmdCheckpoint(ctx, []string{"reset", "-c", cfgPath, "--to", "beginning"}, &rout, &rerr); code != 0 {
		t.Fatalf("checkpoint reset: exit %d: %s", code, rerr.String())
	}
	if !strings.Contains(rout.String(), "reset 3 leases") {
		t.Fatalf("checkpoint reset printed %q", rout.String())
	}
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(out.String(), `"id":"o00"`) <= before {
		if time.Now().After(deadline) {
			t.Fatal("no replay after checkpoint reset")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLeasesCommandsUsage(t *testing.T) {
	var out, errb testkit.Buffer
	if code := cmdLeases(context.Background(), nil, &out, &errb); code != 2 {
		t.Fatalf("leases without list: exit %d", code)
	}
	if code := cmdCheckpoint(context.Background(), []string{"reset", "--to", "yesterday"}, &out, &errb); code != 2 {
		t.Fatalf("bad --to: exit %d", code)
	}
}

// checkpoint reset without --to says that --to is missing (it explained
// which way a PostgreSQL slot moves), for either source, before connecting.
func TestCheckpointResetWithoutTo(t *testing.T) {
	dir := t.TempDir()
	for name, src := range map[string]string{
		"postgres": `{postgres: {url: "postgres://127.0.0.1:1/nowhere", tables: [public.t]}}`,
		"cosmos":   `{cosmos: {endpoint: "https://127.0.0.1:1/", key: "a2V5", database: d, container: c}}`,
	} {
		path := filepath.Join(dir, name+".yaml")
		os.WriteFile(path, []byte("source: "+src+"\nmappings: [{collection: c, hub: h}]\n"), 0o644)
		var out, errb testkit.Buffer
		code := cmdCheckpoint(context.Background(), []string{"reset", "-c", path}, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), "changecast checkpoint reset: --to is required") {
			t.Errorf("%s: exit %d, stderr %q", name, code, errb.String())
		}
	}
}
