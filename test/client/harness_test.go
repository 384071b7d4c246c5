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
	base, _ := startWorkerAt(t, dbURL, slot, testkit.FreeAddr(t), extra)
	return base
}

// startWorkerAt is startWorker with the hub on hubAddr; stop stops the
// worker (a clean stop) before the test ends. pgExtra are more fields of
// source.postgres ("replicaIdentity: keep").
func startWorkerAt(t *testing.T, dbURL, slot, hubAddr, extra string, pgExtra ...string) (base string, stop func() error) {
	t.Helper()
	yaml := fmt.Sprintf(`
source:
  postgres: {url: %q, slot: %s, publication: %s, tables: [public.orders], heartbeat: 1s, statusInterval: 500ms%s}
mappings:
  - {collection: public.orders, hub: orders, group: "tenant-{/tenant}"}
publish:
  target: hub
hub:
  listen: %q
  accessKey: %q
  negotiate:
    path: /api
    auth: {jwt: {hs256Secret: %q, issuer: %s, audience: %s}}
    groups: ["tenant-{claims.tid}"]
%s`, dbURL, slot, slot, pgFields(pgExtra), hubAddr, hubAccessKey, appSecret, appIssuer, appAudience, extra)
	cfg, err := config.Parse([]byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	stop = testkit.Run(t, func(ctx context.Context) error { return worker.Run(ctx, cfg, worker.Options{Logger: log}) })
	base = "http://" + hubAddr + "/api"
	db := testkit.Connect(t, dbURL)
	testkit.Streaming(t, db, slot, 30*time.Second)
	// Snapshots answer 503 until the stream is under way in the worker:
	// wait until they can be read.
	testkit.Until(t, 30*time.Second, "snapshots to be served", func() bool {
		status, _, _, err := get(base+"/snapshot?hub=orders&collection=public.orders&id=-1", appToken("probe", "probe"))
		return err == nil && status != http.StatusServiceUnavailable
	})
	return base, stop
}

func pgFields(extra []string) string {
	if len(extra) == 0 {
		return ""
	}
	return ", " + strings.Join(extra, ", ")
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
	I       int    `json:"i"`
	Tenant  string `json:"tenant"`
	SignalR string `json:"signalr"` // the @microsoft/signalr version it ran on
	State   string `json:"state"`
	Docs    map[string]struct {
		Doc json.RawMessage `json:"doc"`
		V   string          `json:"v"`
	} `json:"docs"`
	Stats  map[string]int `json:"stats"`
	Client map[string]int `json:"client"`
	Errors []string       `json:"errors"`
}

// lineProc is a child process driven by lines: commands on its stdin,
// answers on its stdout (test/node/replicas.mjs, the test/java program).
type lineProc struct {
	t     *testing.T
	stdin io.Writer
	lines chan string
	// seen counts the lines read so far by their first word ("started").
	seen map[string]int
}

// startLineProc starts cmd (its stderr goes to the test log) and, when the
// test ends, writes "stop" and waits for it to exit (killing it after 15 s).
func startLineProc(t *testing.T, cmd *exec.Cmd) *lineProc {
	t.Helper()
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
	p := &lineProc{t: t, stdin: stdin, lines: make(chan string, 64), seen: map[string]int{}}
	done := testkit.Go(t, func() error {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 256<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		return cmd.Wait()
	})
	t.Cleanup(func() {
		io.WriteString(stdin, "stop\n")
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return p
}

func (p *lineProc) send(format string, args ...any) {
	p.t.Helper()
	if _, err := fmt.Fprintf(p.stdin, format+"\n", args...); err != nil {
		p.t.Fatal(err)
	}
}

// await waits for n lines "<word> I"; a "failed I why" line fails the test.
func (p *lineProc) await(word string, n int, timeout time.Duration) {
	p.t.Helper()
	p.awaitTotal(word, p.seen[word]+n, timeout)
}

// awaitTotal waits until n lines "<word> I" were read in all (by any call).
func (p *lineProc) awaitTotal(word string, n int, timeout time.Duration) {
	p.t.Helper()
	deadline := time.After(timeout)
	for p.seen[word] < n {
		select {
		case l, ok := <-p.lines:
			if !ok {
				p.t.Fatal("the clients' process exited")
			}
			p.note(l)
		case <-deadline:
			p.t.Fatalf("%d of %d clients %s within %v", p.seen[word], n, word, timeout)
		}
	}
}

// note counts a line by its first word; a "failed I why" line fails the
// test.
func (p *lineProc) note(l string) {
	p.t.Helper()
	if strings.HasPrefix(l, "failed ") {
		p.t.Fatalf("a client failed: %s", l)
	}
	if w, _, ok := strings.Cut(l, " "); ok {
		p.seen[w]++
	}
}

// dump asks for every client's report (one JSON line).
func (p *lineProc) dump() []clientReport {
	p.t.Helper()
	p.send("dump")
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				p.t.Fatal("the clients' process exited")
			}
			if !strings.HasPrefix(l, "[") {
				p.note(l)
				continue
			}
			var out []clientReport
			if err := json.Unmarshal([]byte(l), &out); err != nil {
				p.t.Fatal(err)
			}
			return out
		case <-time.After(60 * time.Second):
			p.t.Fatal("no dump from the clients' process")
		}
	}
}

// nodeClients runs test/node/replicas.mjs.
type nodeClients struct{ *lineProc }

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
	return &nodeClients{startLineProc(t, cmd)}
}

// waitStarted waits until n clients reported they are live.
func (nc *nodeClients) waitStarted(n int, timeout time.Duration) {
	nc.t.Helper()
	nc.awaitTotal("started", n, timeout)
}

// drop closes client i's connections through the hub's REST API and keeps
// it away for d (it cannot get a token meanwhile); it returns once the hub
// answered.
func (nc *nodeClients) drop(i int, d time.Duration) {
	nc.t.Helper()
	nc.send("drop %d %d", i, d.Milliseconds())
	want := fmt.Sprintf("dropped %d ", i)
	deadline := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-nc.lines:
			if !ok {
				nc.t.Fatal("the clients' process exited")
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

// writeFor runs the workload on db at about 500 changes a second for d.
func writeFor(t *testing.T, w *testkit.Workload, db *pgx.Conn, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := w.Run(db, 5); err != nil {
				t.Fatal(err)
			}
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
