// Package client_test checks the last hop end to end: PostgreSQL →
// changecast (worker, built-in hub, snapshots) → @changecast/client in
// Node, many clients joining while a writer changes rows, each ending with
// exactly the rows of its tenant.
//
// Needs the private cluster of `make test` (CHANGECAST_PG_URL) and the npm
// packages of test/node and clients/js (scripts/setup.sh); go test -short
// skips it.
package client_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/schema/config"
	"github.com/changecast/changecast/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	hubAccessKey = "an-access-key-of-at-least-32-bytes-long"
	appSecret    = "test-secret-of-at-least-32-bytes!!"
	appIssuer    = "changecast-test"
	appAudience  = "changecast-test"
)

// startWorker runs changecast (worker.Run) on dbURL's public.orders with
// the built-in hub and JWT negotiate; it returns the negotiate base URL.
func startWorker(t *testing.T, dbURL, slot string, extra string) string {
	t.Helper()
	hubAddr := testkit.FreeAddr(t)
	yaml := fmt.Sprintf(`
source:
  postgres: {url: %q, slot: %s, publication: %s, tables: [public.orders], heartbeat: 1s, statusInterval: 500ms}
mappings:
  - {collection: public.orders, hub: orders, group: "tenant-{/tenant}"}
publish:
  target: hub
hub:
  listen: %q
  accessKey: "an-access-key-of-at-least-32-bytes-long"
  negotiate:
    path: /api
    auth: {jwt: {hs256Secret: %q, issuer: %s, audience: %s}}
    groups: ["tenant-{claims.tid}"]
%s`, dbURL, slot, slot, hubAddr, appSecret, appIssuer, appAudience, extra)
	cfg, err := config.Parse([]byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	testkit.Run(t, func(ctx context.Context) error { return worker.Run(ctx, cfg, worker.Options{Logger: log}) })
	base := "http://" + hubAddr + "/api"
	db := testkit.Connect(t, dbURL)
	testkit.Streaming(t, db, slot, 30*time.Second)
	// Snapshots answer 503 until the stream is under way in the worker:
	// wait until they can be read.
	testkit.Until(t, 30*time.Second, "snapshots to be served", func() bool {
		status, _, _, err := get(base+"/snapshot?hub=orders&collection=public.orders&id=-1", appToken("probe", "probe"))
		return err == nil && status != http.StatusServiceUnavailable
	})
	return base
}

// get reads u with the app token (none when empty): the status, the body
// and the Content-Length header (-1 when absent).
func get(u, token string) (status int, body []byte, length int64, err error) {
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		return 0, nil, 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, 0, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	return resp.StatusCode, body, resp.ContentLength, err
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// clientReport is what test/node/replicas.mjs reports of one client.
type clientReport struct {
	I      int    `json:"i"`
	Tenant string `json:"tenant"`
	State  string `json:"state"`
	Docs   map[string]struct {
		Doc json.RawMessage `json:"doc"`
		V   string          `json:"v"`
	} `json:"docs"`
	Stats  map[string]int `json:"stats"`
	Client map[string]int `json:"client"`
	Errors []string       `json:"errors"`
}

// nodeClients runs test/node/replicas.mjs.
type nodeClients struct {
	t     *testing.T
	stdin io.WriteCloser
	lines chan string
	// count counts the lines read so far by their first word ("started").
	count map[string]int
	mu    sync.Mutex
	seen  []string
}

func startClients(t *testing.T, base string, n int, tenants []string, join time.Duration) *nodeClients {
	t.Helper()
	node := testkit.NeedNode(t, "test/node", "@microsoft/signalr")
	testkit.NeedNode(t, "clients/js", "fast-json-patch", "@microsoft/signalr")
	cmd := exec.Command(node, "replicas.mjs")
	cmd.Dir = filepath.Join(testkit.Root(t), "test", "node")
	cmd.Env = append(os.Environ(), "CHANGECAST_NEGOTIATE_URL="+base, "CHANGECAST_HUB=orders",
		"CHANGECAST_HUB_URL="+strings.TrimSuffix(base, "/api"), "CHANGECAST_HUB_KEY="+hubAccessKey,
		"CHANGECAST_APP_SECRET="+appSecret, "CHANGECAST_APP_ISSUER="+appIssuer, "CHANGECAST_APP_AUDIENCE="+appAudience,
		fmt.Sprintf("CLIENTS=%d", n), "TENANTS="+strings.Join(tenants, ","), fmt.Sprintf("JOIN_MS=%d", join.Milliseconds()))
	cmd.Stderr = testWriter{t}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	nc := &nodeClients{t: t, stdin: stdin, lines: make(chan string, 64)}
	done := testkit.Go(t, func() error {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 256<<20)
		for sc.Scan() {
			nc.lines <- sc.Text()
		}
		close(nc.lines)
		return cmd.Wait()
	})
	t.Cleanup(func() {
		io.WriteString(stdin, "stop\n")
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return nc
}

// note counts a line by its first word; a "failed I why" line fails the
// test.
func (nc *nodeClients) note(l string) {
	nc.t.Helper()
	if strings.HasPrefix(l, "failed ") {
		nc.t.Fatalf("a client failed to start: %s", l)
	}
	if w, _, ok := strings.Cut(l, " "); ok {
		if nc.count == nil {
			nc.count = map[string]int{}
		}
		nc.count[w]++
	}
}

// waitStarted waits until n clients reported they are live (in all).
func (nc *nodeClients) waitStarted(n int, timeout time.Duration) {
	nc.t.Helper()
	deadline := time.After(timeout)
	for nc.count["started"] < n {
		select {
		case l, ok := <-nc.lines:
			if !ok {
				nc.t.Fatal("the node clients exited")
			}
			nc.note(l)
		case <-deadline:
			nc.t.Fatalf("%d of %d clients started within %v", nc.count["started"], n, timeout)
		}
	}
}

// drop closes client i's connections through the hub's REST API and keeps
// it away for d (it cannot get a token meanwhile); it returns once the hub
// answered.
func (nc *nodeClients) drop(i int, d time.Duration) {
	nc.t.Helper()
	if _, err := fmt.Fprintf(nc.stdin, "drop %d %d\n", i, d.Milliseconds()); err != nil {
		nc.t.Fatal(err)
	}
	want := fmt.Sprintf("dropped %d ", i)
	deadline := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-nc.lines:
			if !ok {
				nc.t.Fatal("the node clients exited")
			}
			nc.note(l)
			if !strings.HasPrefix(l, want) {
				continue
			}
			if st := strings.TrimPrefix(l, want); st != "200" && st != "204" {
				nc.t.Fatalf("drop of client %d: the hub answered %s", i, st)
			}
			return
		case <-deadline:
			nc.t.Fatalf("no answer to the drop of client %d", i)
		}
	}
}

func (nc *nodeClients) dump() []clientReport {
	nc.t.Helper()
	if _, err := io.WriteString(nc.stdin, "dump\n"); err != nil {
		nc.t.Fatal(err)
	}
	for {
		select {
		case l, ok := <-nc.lines:
			if !ok {
				nc.t.Fatal("the node clients exited")
			}
			if !strings.HasPrefix(l, "[") {
				nc.note(l)
				continue
			}
			var out []clientReport
			if err := json.Unmarshal([]byte(l), &out); err != nil {
				nc.t.Fatal(err)
			}
			return out
		case <-time.After(60 * time.Second):
			nc.t.Fatal("no dump from the node clients")
		}
	}
}

// tenantRows reads the rows of each tenant as the stream encodes them.
func tenantRows(t *testing.T, db *pgx.Conn) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for k, b := range testkit.DBDocs(t, db, "public.orders", "id") {
		d := testkit.NormJSON(t, b).(map[string]any)
		tn := d["tenant"].(string)
		if out[tn] == nil {
			out[tn] = map[string]any{}
		}
		out[tn][k] = d
	}
	return out
}

// diffClients compares every client's replica with its tenant's rows; it
// returns the first differences, or "".
func diffClients(t *testing.T, reports []clientReport, rows map[string]map[string]any) string {
	var problems []string
	for _, r := range reports {
		want := rows[r.Tenant]
		for k, w := range want {
			g, ok := r.Docs[k]
			if !ok {
				problems = append(problems, fmt.Sprintf("client %d (%s): %s missing", r.I, r.Tenant, k))
				continue
			}
			if gd := testkit.NormJSON(t, g.Doc); !reflect.DeepEqual(gd, w) {
				problems = append(problems, fmt.Sprintf("client %d (%s): %s v%s differs:\n got %s", r.I, r.Tenant, k, g.V, trunc(g.Doc)))
			}
		}
		for k := range r.Docs {
			if _, ok := want[k]; !ok {
				problems = append(problems, fmt.Sprintf("client %d (%s): %s extra (v%s)", r.I, r.Tenant, k, r.Docs[k].V))
			}
		}
	}
	sort.Strings(problems)
	if len(problems) > 8 {
		problems = append(problems[:8], fmt.Sprintf("... and %d more", len(problems)-8))
	}
	return strings.Join(problems, "\n")
}

func trunc(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}
