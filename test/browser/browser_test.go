// Package browser_test checks the demo's live page end to end in headless
// Chromium: PostgreSQL → changecast (built-in hub, snapshots) →
// @microsoft/signalr and @changecast/client in the page → the table. It
// also runs the Node unit tests of @changecast/client (clients/js).
//
// Needs what scripts/setup.sh installs (Debian chromium at /usr/bin/chromium,
// the npm packages of clients/js and web) and the private cluster of `make
// test` (CHANGECAST_PG_URL); go test -short skips it. Set
// CHANGECAST_BROWSER_SCREENSHOT=/tmp/page.png to keep a screenshot of the
// page at the end of TestLivePage.
package browser_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/publish/signalr"
)

// TestClientPackage runs the Node unit tests of @changecast/client:
// `node --test` in clients/js, which runs the files under clients/js/test.
func TestClientPackage(t *testing.T) {
	t.Parallel()
	node := testkit.NeedNode(t, "clients/js", "fast-json-patch", "@microsoft/signalr", "typescript")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec")
	cmd.Dir = filepath.Join(testkit.Root(t), "clients", "js")
	out, err := cmd.CombinedOutput()
	t.Logf("node --test in clients/js:\n%s", out)
	if err != nil {
		t.Fatalf("@changecast/client unit tests failed: %v", err)
	}
	pass, fail, ok := nodeTestCounts(out)
	switch {
	case !ok:
		t.Fatalf("node --test printed no pass and fail counts")
	case fail != 0:
		t.Fatalf("node --test: %d tests failed", fail)
	case pass == 0:
		t.Fatalf("node --test ran no tests (pass 0): clients/js/test has no test that ran")
	}
}

// nodeTestCounts reads the summary the spec reporter prints at the end
// ("ℹ pass 18", "ℹ fail 0"); an empty test directory prints "pass 0" too,
// so the counts, not the word, tell whether tests ran.
func nodeTestCounts(out []byte) (pass, fail int, ok bool) {
	re := regexp.MustCompile(`(?m)^\S*\s*(pass|fail) (\d+)\s*$`)
	seen := map[string]bool{}
	for _, m := range re.FindAllSubmatch(out, -1) {
		n, err := strconv.Atoi(string(m[2]))
		if err != nil {
			return 0, 0, false
		}
		// The last summary wins: a test's own output cannot stand for it.
		if string(m[1]) == "pass" {
			pass = n
		} else {
			fail = n
		}
		seen[string(m[1])] = true
	}
	return pass, fail, seen["pass"] && seen["fail"]
}

// TestLivePage runs the demo (demo/demo.yaml with changecast's built-in
// hub, and demo/demoapp) on a fresh database and free ports, opens the page
// as tenant acme in headless Chromium, and checks that its table is loaded
// from changecast's snapshot and that rows inserted, updated, moved between
// tenants and deleted in PostgreSQL show on the page; that another tenant's
// rows never show; and that no change needs a refetch: every patch applies
// to the version the page holds, including the rows loaded from the
// snapshot.
func TestLivePage(t *testing.T) {
	t.Parallel()
	d := startDemo(t)

	// Row 2 changes before the page opens: the snapshot holds it at that
	// change's version, and its next change, a patch, applies to it.
	testkit.Exec(t, d.db, `UPDATE orders SET status = 'paid' WHERE id = 2`)
	waitFor(t, 15*time.Second, "the first change to be published", d.cc, func() bool {
		return metric(d.ops, "changecast_changes_published_total") >= 1
	})

	p, ready := d.openPage(t)
	checkRows(t, d.db, ready.Rows)
	// Until the snapshot is in, the page says it is loading, never that
	// the tenant has no orders.
	if ready.BeforeLive["empty"] || !ready.BeforeLive["loading"] {
		t.Errorf("before the page was live: %v, want the loading line and not \"No orders\"", ready.BeforeLive)
	}
	if got := ready.Rows["2"]["status"]; got != "paid" {
		t.Errorf("row 2 loaded with status %q, want paid", got)
	}
	if ready.Client["snapshotDocs"] < 4 {
		t.Errorf("the page loaded %d snapshot documents, want acme's 4 rows: %v", ready.Client["snapshotDocs"], ready.Client)
	}

	var gid, aid int64
	// Another tenant's insert first: if it reached this page, it would be
	// there by the time acme's insert shows.
	mustScan(t, d.db, &gid, `INSERT INTO orders (tenant, item, qty, total) VALUES ('globex', 'not for acme', 1, 1) RETURNING id`)
	mustScan(t, d.db, &aid, `INSERT INTO orders (tenant, item, qty, total, internal_note) VALUES ('acme', 'from the test', 3, 12.5, 'secret') RETURNING id`)
	ids := strconv.FormatInt(aid, 10)
	rows := p.call(t, map[string]any{"cmd": "wait", "id": ids, "cells": map[string]string{"item": "from the test", "qty": "3", "status": "new", "total": "12.50"}})
	if _, ok := rows.Rows[strconv.FormatInt(gid, 10)]; ok {
		t.Errorf("globex's row %d shows on acme's page", gid)
	}
	doc := p.call(t, map[string]any{"cmd": "doc", "id": ids}).Doc
	if doc["customer"] != "Ada Lovelace" || doc["tenant"] != "acme" {
		t.Errorf("the page's copy of row %d is %v", aid, doc)
	}
	if _, ok := doc["internal_note"]; ok {
		t.Errorf("the page received the excluded column internal_note: %v", doc)
	}

	// A patch of a document the page received as an upsert.
	testkit.Exec(t, d.db, `UPDATE orders SET status = 'shipped', qty = 42 WHERE id = $1`, aid)
	p.call(t, map[string]any{"cmd": "wait", "id": ids, "cells": map[string]string{"status": "shipped", "qty": "42"}})
	// A patch of a document loaded from the snapshot: it applies (no refetch).
	testkit.Exec(t, d.db, `UPDATE orders SET status = 'packed', item = 'patched' WHERE id = 2`)
	p.call(t, map[string]any{"cmd": "wait", "id": "2", "cells": map[string]string{"status": "packed", "item": "patched"}})
	// Row 1 was never changed since the page loaded it: two changes in a row.
	testkit.Exec(t, d.db, `UPDATE orders SET qty = 100 WHERE id = 1`)
	p.call(t, map[string]any{"cmd": "wait", "id": "1", "cells": map[string]string{"qty": "100"}})
	testkit.Exec(t, d.db, `UPDATE orders SET qty = 101, status = 'paid' WHERE id = 1`)
	p.call(t, map[string]any{"cmd": "wait", "id": "1", "cells": map[string]string{"qty": "101", "status": "paid"}})
	// Deleted, and moved to another tenant: both leave acme's page.
	testkit.Exec(t, d.db, `DELETE FROM orders WHERE id = $1`, aid)
	p.call(t, map[string]any{"cmd": "gone", "id": ids})
	testkit.Exec(t, d.db, `UPDATE orders SET tenant = 'globex' WHERE id = 1`)
	p.call(t, map[string]any{"cmd": "gone", "id": "1"})
	// Moved from globex to acme: it shows, whole.
	testkit.Exec(t, d.db, `UPDATE orders SET tenant = 'acme', status = 'moved' WHERE id = 3`)
	p.call(t, map[string]any{"cmd": "wait", "id": "3", "cells": map[string]string{"item": "widget 3", "status": "moved", "qty": "3"}})
	// A row changecast never saw change: its delete is routed by the old
	// row (demo/schema.sql sets REPLICA IDENTITY FULL).
	testkit.Exec(t, d.db, `DELETE FROM orders WHERE id = 5`)
	rows = p.call(t, map[string]any{"cmd": "gone", "id": "5"})
	checkRows(t, d.db, rows.Rows)

	st := p.call(t, map[string]any{"cmd": "stats"})
	t.Logf("page: state %s, replica %v, client %v, counters %v", st.State, st.Stats, st.Client, st.Counters)
	if st.State != "live" {
		t.Errorf("page state %q, want live", st.State)
	}
	for k, min := range map[string]int{"upserts": 2, "patches": 3, "deletes": 3} {
		if st.Stats[k] < min {
			t.Errorf("replica stats %s = %d, want at least %d", k, st.Stats[k], min)
		}
	}
	if st.Stats["refetches"] != 0 || st.Stats["gaps"] != 0 || st.Counters["refetches"] != "0" {
		t.Errorf("refetches %d (the page shows %q), gaps %d: want 0: every change applies to the version the page holds",
			st.Stats["refetches"], st.Counters["refetches"], st.Stats["gaps"])
	}
	if st.Counters["envelopes"] != strconv.Itoa(st.Stats["envelopes"]) || st.Counters["snapshot"] != strconv.Itoa(st.Client["snapshotDocs"]) {
		t.Errorf("the page's counters %v do not show the client's stats %v %v", st.Counters, st.Stats, st.Client)
	}
	if path := os.Getenv("CHANGECAST_BROWSER_SCREENSHOT"); path != "" {
		p.call(t, map[string]any{"cmd": "screenshot", "path": path})
		t.Logf("screenshot: %s", path)
	}
	p.quit(t)
	checkREADMEMetrics(t, d)
}

// checkREADMEMetrics checks that /metrics exports every name the README's
// Operations section lists, and that those the demo run must have moved
// did: changes were read, published in batches and timed, snapshots
// served and timed, and a snapshot without a token refused (401).
func checkREADMEMetrics(t *testing.T, d *demo) {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(d.root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	// The Operations bullet: "- `server.listen` serves … (Prometheus: …)."
	_, ops, _ := strings.Cut(string(readme), "- `server.listen` serves")
	ops, _, _ = strings.Cut(ops, "\n- ")
	names := regexp.MustCompile("`(changecast_[a-z_]+)(?:\\{[a-z]+\\})?`").FindAllStringSubmatch(ops, -1)
	if len(names) < 10 {
		t.Fatalf("found %d metric names in the README's Operations section, want its list", len(names))
	}
	res, err := http.Get(d.hubURL + "/api/snapshot?hub=orders")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("snapshot without a token: %d, want 401", res.StatusCode)
	}
	res, err = http.Get(d.ops + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, m := range names {
		if !regexp.MustCompile(`(?m)^# TYPE ` + m[1] + ` `).Match(body) {
			t.Errorf("/metrics has no %s, which the README lists", m[1])
		}
	}
	for _, name := range []string{"changecast_changes_read_total", "changecast_changes_published_total", "changecast_batches_published_total",
		"changecast_publish_seconds_count", "changecast_snapshots_served_total", "changecast_snapshot_documents_total",
		"changecast_snapshot_seconds_count", `changecast_snapshot_refused_total{status="401"}`} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` [1-9]`).Match(body) {
			t.Errorf("/metrics: %s is not positive after the run", name)
		}
	}
}

// TestPageReconnect checks that the page survives losing its connection:
// first its WebSocket is dropped (closed from the page, with negotiate
// refused until the test has changed rows), then changecast itself is
// stopped and started again while rows change, then the hub closes the
// connection without allowing a reconnect. Each time the page goes back
// to live and shows exactly acme's rows, including the changes made while
// it was disconnected, without a refetch: the first two times the client
// catches up from the history (kept across the restart in history.file),
// without reloading its snapshot; the last time the page starts a new
// client.
func TestPageReconnect(t *testing.T) {
	t.Parallel()
	d := startDemo(t)
	p, ready := d.openPage(t)
	checkRows(t, d.db, ready.Rows)

	// 1. The WebSocket drops; the client cannot reconnect until "online".
	p.call(t, map[string]any{"cmd": "offline"})
	p.call(t, map[string]any{"cmd": "state", "state": "reconnecting"})
	published := metric(d.ops, "changecast_changes_published_total")
	var a1 int64
	mustScan(t, d.db, &a1, `INSERT INTO orders (tenant, item, qty, total) VALUES ('acme', 'while offline', 7, 7) RETURNING id`)
	testkit.Exec(t, d.db, `UPDATE orders SET status = 'offline', qty = 55 WHERE id = 2`)
	testkit.Exec(t, d.db, `DELETE FROM orders WHERE id = 4`)
	testkit.Exec(t, d.db, `UPDATE orders SET tenant = 'acme' WHERE id = 3`)
	testkit.Exec(t, d.db, `UPDATE orders SET tenant = 'globex' WHERE id = 1`)
	// Sent while the page was away: it can only learn them from the snapshot.
	waitFor(t, 15*time.Second, "the changes made while offline to be published", d.cc, func() bool {
		return metric(d.ops, "changecast_changes_published_total") >= published+7
	})
	if st := p.call(t, map[string]any{"cmd": "stats"}); st.State != "reconnecting" {
		t.Fatalf("page state %q while negotiate is refused, want reconnecting", st.State)
	}
	p.call(t, map[string]any{"cmd": "online"})
	st := p.call(t, map[string]any{"cmd": "state", "state": "live", "timeout": 30000})
	p.call(t, map[string]any{"cmd": "wait", "id": strconv.FormatInt(a1, 10), "cells": map[string]string{"item": "while offline", "qty": "7"}})
	p.call(t, map[string]any{"cmd": "wait", "id": "2", "cells": map[string]string{"status": "offline", "qty": "55"}})
	p.call(t, map[string]any{"cmd": "wait", "id": "3", "cells": map[string]string{"item": "widget 3"}})
	p.call(t, map[string]any{"cmd": "gone", "id": "4"})
	rows := p.call(t, map[string]any{"cmd": "gone", "id": "1"})
	checkRows(t, d.db, rows.Rows)
	st = p.call(t, map[string]any{"cmd": "stats"})
	t.Logf("after the dropped WebSocket: state %s, replica %v, client %v", st.State, st.Stats, st.Client)
	if st.Client["catchUps"] != 1 || st.Client["reloads"] != 0 || st.Client["snapshots"] != 1 || st.Counters["reloads"] != "0" {
		t.Errorf("client stats %v, counters %v: want a catch-up from the history, no reload", st.Client, st.Counters)
	}
	// Live again: a change shows.
	testkit.Exec(t, d.db, `UPDATE orders SET status = 'back' WHERE id = 2`)
	p.call(t, map[string]any{"cmd": "wait", "id": "2", "cells": map[string]string{"status": "back"}})

	// 2. changecast stops (its hub closes the connections, allowing a
	// reconnect) and starts again; rows change while it is down.
	if err := d.cc.stop(30 * time.Second); err != nil {
		t.Fatalf("changecast did not stop cleanly: %v\n%s", err, d.cc.logs())
	}
	p.call(t, map[string]any{"cmd": "state", "state": "reconnecting"})
	var a2 int64
	mustScan(t, d.db, &a2, `INSERT INTO orders (tenant, item, qty, total) VALUES ('acme', 'while down', 8, 8) RETURNING id`)
	testkit.Exec(t, d.db, `UPDATE orders SET status = 'down' WHERE id = 3`)
	testkit.Exec(t, d.db, `DELETE FROM orders WHERE id = $1`, a1)
	d.startChangecast(t)
	p.call(t, map[string]any{"cmd": "state", "state": "live", "timeout": 45000})
	p.call(t, map[string]any{"cmd": "wait", "id": strconv.FormatInt(a2, 10), "cells": map[string]string{"item": "while down"}, "timeout": 30000})
	p.call(t, map[string]any{"cmd": "wait", "id": "3", "cells": map[string]string{"status": "down"}, "timeout": 30000})
	rows = p.call(t, map[string]any{"cmd": "gone", "id": strconv.FormatInt(a1, 10), "timeout": 30000})
	checkRows(t, d.db, rows.Rows)
	// And live again.
	testkit.Exec(t, d.db, `UPDATE orders SET qty = 99 WHERE id = 2`)
	rows = p.call(t, map[string]any{"cmd": "wait", "id": "2", "cells": map[string]string{"qty": "99"}})
	checkRows(t, d.db, rows.Rows)

	st = p.call(t, map[string]any{"cmd": "stats"})
	t.Logf("after the restart: state %s, replica %v, client %v", st.State, st.Stats, st.Client)
	if st.Client["catchUps"] != 2 || st.Client["reloads"] != 0 || st.Client["resyncs"] != 0 || st.Client["snapshots"] != 1 {
		t.Errorf("client stats %v: want a catch-up from the saved history after the restart, no reload", st.Client)
	}
	if !strings.Contains(d.cc.logs(), "resumed from the saved history") {
		t.Errorf("changecast did not resume its saved history:\n%s", d.cc.logs())
	}
	if st.Stats["refetches"] != 0 || st.Counters["refetches"] != "0" {
		t.Errorf("refetches %d (the page shows %q), want 0", st.Stats["refetches"], st.Counters["refetches"])
	}

	// 3. The hub closes the connection for good (the REST API with
	// allowReconnect=false): the client stops, and the page starts a new
	// one, once negotiate is let through again.
	p.call(t, map[string]any{"cmd": "offline", "close": false})
	d.closeConnection(t, st.ConnectionID)
	p.call(t, map[string]any{"cmd": "state", "states": []string{"stopped", "connecting", "error"}})
	var a3 int64
	mustScan(t, d.db, &a3, `INSERT INTO orders (tenant, item, qty, total) VALUES ('acme', 'while stopped', 9, 9) RETURNING id`)
	testkit.Exec(t, d.db, `UPDATE orders SET status = 'stopped' WHERE id = 2`)
	testkit.Exec(t, d.db, `DELETE FROM orders WHERE id = $1`, a2)
	p.call(t, map[string]any{"cmd": "online"})
	st = p.call(t, map[string]any{"cmd": "state", "state": "live", "timeout": 30000})
	p.call(t, map[string]any{"cmd": "wait", "id": strconv.FormatInt(a3, 10), "cells": map[string]string{"item": "while stopped"}})
	p.call(t, map[string]any{"cmd": "wait", "id": "2", "cells": map[string]string{"status": "stopped"}})
	rows = p.call(t, map[string]any{"cmd": "gone", "id": strconv.FormatInt(a2, 10)})
	checkRows(t, d.db, rows.Rows)
	st = p.call(t, map[string]any{"cmd": "stats"})
	t.Logf("after the hub closed the connection: state %s, replica %v, client %v", st.State, st.Stats, st.Client)
	if st.Client["snapshots"] != 1 || st.Client["reloads"] != 0 {
		t.Errorf("client stats %v: want a new client, which loaded the snapshot once", st.Client)
	}
	if st.Stats["refetches"] != 0 || st.Counters["refetches"] != "0" {
		t.Errorf("refetches %d (the page shows %q), want 0", st.Stats["refetches"], st.Counters["refetches"])
	}
	p.quit(t)
	// The README: a key of yours is never printed or logged. Both runs had
	// the deployment's key (CHANGECAST_HUB_ACCESS_KEY) and served REST
	// calls signed with it; their stdout and log hold no trace of it.
	for i, cc := range d.ccs {
		if out := cc.logs(); out == "" || strings.Contains(out, d.accessKey) {
			t.Errorf("changecast run %d printed or logged the access key (or wrote nothing to check):\n%s", i+1, out)
		}
	}
}

// closeConnection closes a client connection through the hub's REST API
// (Azure SignalR's 2022-06-01 route) without allowing a reconnect.
func (d *demo) closeConnection(t *testing.T, id string) {
	t.Helper()
	if id == "" {
		t.Fatal("the page has no connection id")
	}
	u := d.hubURL + "/api/hubs/orders/connections/" + url.PathEscape(id)
	tok, err := signalr.SignAccessToken(d.accessKey, u, "", time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodDelete, u+"?api-version=2022-06-01&allowReconnect=false&reason=test", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("DELETE %s: %s", u, res.Status)
	}
}

// demo is the demo's processes on a fresh database and free ports.
type demo struct {
	db     *pgx.Conn
	root   string
	node   string
	env    []string // changecast's
	bin    string
	ops    string // changecast's server.listen: /readyz, /metrics
	hubURL string // changecast's hub
	// accessKey is the hub's access key, for its REST API.
	accessKey string
	pageURL   string
	app       *proc
	cc        *proc   // the running changecast
	ccs       []*proc // every changecast started, for the logs

	// adminToken is changecast's server.adminToken: the admin API and the console.
	adminToken string
}

// startDemo builds changecast and demoapp, creates demo/schema.sql's table
// in a throwaway database and starts both, like scripts/demo.sh (without
// the writer).
func startDemo(t *testing.T) *demo {
	t.Helper()
	testkit.NeedChromium(t)
	d := &demo{root: testkit.Root(t)}
	d.node = testkit.NeedNode(t, "web", "@changecast/client", "fast-json-patch", "playwright-core", "@microsoft/signalr")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The database and its slot go away after the processes started below,
	// which are stopped first.
	dbURL := testkit.Database(t)
	d.db = testkit.Connect(t, dbURL)
	schemaSQL, err := os.ReadFile(filepath.Join(d.root, "demo", "schema.sql"))
	if err != nil {
		t.Fatal(err)
	}
	testkit.Exec(t, d.db, string(schemaSQL))

	d.bin = t.TempDir()
	build := exec.CommandContext(ctx, "go", "build", "-o", d.bin, "./cmd/changecast", "./demo/demoapp")
	build.Dir = d.root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	secret := randomHex(t, 24)
	hubAddr, srvAddr := testkit.FreeAddr(t), testkit.FreeAddr(t)
	env := append(os.Environ(), "CHANGECAST_DEMO_SECRET="+secret)

	// The app first: changecast's CORS needs the page's origin.
	d.app = start(t, filepath.Join(d.bin, "demoapp"), env, "-listen", "127.0.0.1:0", "-web", filepath.Join(d.root, "web"),
		"-negotiate", "http://"+hubAddr+"/api")
	line, err := d.app.line(10 * time.Second)
	if err != nil || !strings.HasPrefix(line, "demoapp: serving ") {
		t.Fatalf("demoapp did not start (%q, %v):\n%s", line, err, d.app.logs())
	}
	d.pageURL = strings.TrimPrefix(line, "demoapp: serving ")
	u, err := url.Parse(d.pageURL)
	if err != nil {
		t.Fatal(err)
	}
	d.hubURL = "http://" + hubAddr
	d.accessKey = randomHex(t, 32)
	d.adminToken = randomHex(t, 16)
	d.env = append(env,
		"CHANGECAST_PG_URL="+dbURL,
		"CHANGECAST_DEMO_SLOT="+databaseName(t, dbURL),
		"CHANGECAST_DEMO_HUB="+hubAddr,
		"CHANGECAST_DEMO_APP_PORT="+u.Port(),
		"CHANGECAST_DEMO_SERVER="+srvAddr,
		"CHANGECAST_DEMO_ADMIN_TOKEN="+d.adminToken,
		// One key across restarts, as a deployment has.
		"CHANGECAST_HUB_ACCESS_KEY="+d.accessKey,
		"CHANGECAST_LOG=text",
		// The history survives a graceful restart, as in make demo.
		"CHANGECAST_DEMO_HISTORY="+filepath.Join(t.TempDir(), "history"),
	)
	d.ops = "http://" + srvAddr
	d.startChangecast(t)
	t.Cleanup(func() {
		if t.Failed() {
			for i, cc := range d.ccs {
				t.Logf("--- changecast (run %d):\n%s", i+1, cc.logs())
			}
			t.Logf("--- demoapp:\n%s", d.app.logs())
		}
	})
	return d
}

// startChangecast runs `changecast run -c demo/demo.yaml` and waits until
// it streams.
func (d *demo) startChangecast(t *testing.T) {
	t.Helper()
	d.cc = start(t, filepath.Join(d.bin, "changecast"), d.env, "run", "-c", filepath.Join(d.root, "demo", "demo.yaml"))
	d.ccs = append(d.ccs, d.cc)
	waitFor(t, 30*time.Second, "changecast /readyz", d.cc, func() bool { return httpOK(d.ops + "/readyz") })
}

// page is page.mjs driving the demo page in Chromium.
type page struct {
	*proc
	d *demo
}

// pageResult is page.mjs's answer to a command.
type pageResult struct {
	Ready    bool                         `json:"ready"`
	OK       bool                         `json:"ok"`
	Error    string                       `json:"error"`
	Rows     map[string]map[string]string `json:"rows"`
	Doc      map[string]any               `json:"doc"`
	State    string                       `json:"state"`
	Stats    map[string]int               `json:"stats"`
	Client   map[string]int               `json:"client"`
	Counters map[string]string            `json:"counters"`
	// ConnectionID is the client's SignalR connection id.
	ConnectionID string `json:"connectionId"`
	// BeforeLive: whether "No orders" (empty) and the loading line were
	// shown before the page was live.
	BeforeLive map[string]bool `json:"beforeLive"`
}

// openPage opens the page as tenant acme and waits until it is live.
func (d *demo) openPage(t *testing.T) (*page, pageResult) {
	t.Helper()
	p := &page{proc: start(t, d.node, nil, filepath.Join(d.root, "test", "browser", "page.mjs"), d.pageURL), d: d}
	var ready pageResult
	p.read(t, 40*time.Second, &ready)
	if !ready.Ready {
		t.Fatalf("the page did not go live: %s\n--- page.mjs:\n%s", ready.Error, p.logs())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- page.mjs:\n%s", p.logs())
		}
	})
	return p, ready
}

// call sends page.mjs one command and fails the test unless it succeeds.
func (p *page) call(t *testing.T, cmd map[string]any) pageResult {
	t.Helper()
	b, _ := json.Marshal(cmd)
	p.write(t, b)
	wait := 30 * time.Second
	if ms, ok := cmd["timeout"].(int); ok {
		wait = time.Duration(ms)*time.Millisecond + 15*time.Second
	}
	var res pageResult
	p.read(t, wait, &res)
	if !res.OK {
		t.Fatalf("%s: %s\npage rows: %v\nstate %s, replica %v, client %v", b, res.Error, res.Rows, res.State, res.Stats, res.Client)
	}
	return res
}

// quit closes the browser and waits for page.mjs.
func (p *page) quit(t *testing.T) {
	t.Helper()
	p.call(t, map[string]any{"cmd": "quit"})
	if err := p.wait(10 * time.Second); err != nil {
		t.Errorf("page.mjs: %v\n%s", err, p.logs())
	}
}

// checkRows compares the page's table with acme's rows in the database.
func checkRows(t *testing.T, db *pgx.Conn, page map[string]map[string]string) {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT id::text, item, qty::text, status FROM orders WHERE tenant = 'acme' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{}
	for rows.Next() {
		var id, item, qty, status string
		if err := rows.Scan(&id, &item, &qty, &status); err != nil {
			t.Fatal(err)
		}
		want[id] = map[string]string{"item": item, "qty": qty, "status": status}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var bad []string
	for id, w := range want {
		p, ok := page[id]
		if !ok {
			bad = append(bad, "row "+id+" is missing")
			continue
		}
		for col, v := range w {
			if p[col] != v {
				bad = append(bad, fmt.Sprintf("row %s: %s is %q, want %q", id, col, p[col], v))
			}
		}
	}
	for id := range page {
		if _, ok := want[id]; !ok {
			bad = append(bad, "row "+id+" should not be shown")
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Errorf("the page's table differs from acme's rows:\n  %s", strings.Join(bad, "\n  "))
	}
}

// databaseName is the name of the database at dbURL; the demo's slot is
// named after it, so that it goes with the database.
func databaseName(t *testing.T, dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

func mustScan(t *testing.T, db *pgx.Conn, dst any, sql string, args ...any) {
	t.Helper()
	if err := db.QueryRow(context.Background(), sql, args...).Scan(dst); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func httpOK(u string) bool {
	c := http.Client{Timeout: time.Second}
	res, err := c.Get(u)
	if err != nil {
		return false
	}
	res.Body.Close()
	return res.StatusCode == http.StatusOK
}

// metric sums a Prometheus counter's samples from /metrics (-1: unreadable).
func metric(base, name string) float64 {
	c := http.Client{Timeout: time.Second}
	res, err := c.Get(base + "/metrics")
	if err != nil {
		return -1
	}
	defer res.Body.Close()
	var sum float64
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != ' ' && line[len(name)] != '{') {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// waitFor polls ok until it holds, failing at once if p exits meanwhile.
func waitFor(t *testing.T, d time.Duration, what string, p *proc, ok func() bool) {
	t.Helper()
	testkit.Until(t, d, what, func() bool {
		if p.exited() {
			t.Fatalf("waiting for %s: the process exited\n%s", what, p.logs())
		}
		return ok()
	})
}

// proc is a child process with its stdout read line by line and its
// stdout and stderr kept for the test's failure messages and checks. It is stopped with SIGTERM
// when the test ends.
type proc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	done  chan struct{}
	err   error
	mu    sync.Mutex
	log   bytes.Buffer
}

func start(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(name, args...), lines: make(chan string, 100), done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stderr = lockedWriter{p}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lockedWriter{p}.Write([]byte(sc.Text() + "\n"))
			p.lines <- sc.Text()
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			p.cmd.Process.Signal(syscall.SIGTERM)
		}
		if p.wait(10*time.Second) != nil && !p.exited() {
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

type lockedWriter struct{ p *proc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.log.Write(b)
}

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to d for the process to exit.
func (p *proc) stop(d time.Duration) error {
	if !p.exited() {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	return p.wait(d)
}

func (p *proc) wait(d time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		return fmt.Errorf("still running after %v", d)
	}
}

func (p *proc) line(d time.Duration) (string, error) {
	select {
	case l := <-p.lines:
		return l, nil
	case <-p.done:
		select {
		case l := <-p.lines:
			return l, nil
		default:
		}
		return "", fmt.Errorf("exited: %v", p.err)
	case <-time.After(d):
		return "", fmt.Errorf("no output within %v", d)
	}
}

func (p *proc) read(t *testing.T, d time.Duration, v any) {
	t.Helper()
	l, err := p.line(d)
	if err != nil {
		t.Fatalf("page.mjs: %v\n%s", err, p.logs())
	}
	if err := json.Unmarshal([]byte(l), v); err != nil {
		t.Fatalf("page.mjs wrote %q: %v\n%s", l, err, p.logs())
	}
}

func (p *proc) write(t *testing.T, b []byte) {
	t.Helper()
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		t.Fatalf("page.mjs: %v\n%s", err, p.logs())
	}
}
