// Package browser_test checks the demo's live page end to end in headless
// Chromium: PostgreSQL → changecast (built-in hub) → @microsoft/signalr in
// the page → web/changecast.js → the table. It also runs the Node unit
// tests of web/changecast.js.
//
// Needs what scripts/setup.sh installs (Debian chromium at /usr/bin/chromium,
// web/node_modules) and the private cluster of `make test`
// (CHANGECAST_PG_URL); go test -short skips it. Set
// CHANGECAST_BROWSER_SCREENSHOT=/tmp/page.png to keep a screenshot of the
// page at the end.
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
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/changecast/changecast/internal/testkit"
)

// TestClientHelper runs the Node unit tests of web/changecast.js.
func TestClientHelper(t *testing.T) {
	t.Parallel()
	node := testkit.NeedNode(t, "web", "fast-json-patch")
	root := testkit.Root(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "changecast.test.mjs")
	cmd.Dir = filepath.Join(root, "test", "browser")
	out, err := cmd.CombinedOutput()
	t.Logf("node --test:\n%s", out)
	if err != nil {
		t.Fatalf("changecast.js unit tests failed: %v", err)
	}
}

// TestLivePage runs the demo (demo/demo.yaml with changecast's built-in
// hub, and demo/demoapp) on a fresh database and free ports, opens the page
// as tenant acme in headless Chromium, and checks that rows inserted,
// updated, moved to another tenant and deleted in PostgreSQL show on the
// page, through every path of the client: upsert, patch, refetch of a
// document loaded from the API, delete; and that another tenant's rows
// never show.
func TestLivePage(t *testing.T) {
	t.Parallel()
	testkit.NeedChromium(t)
	node := testkit.NeedNode(t, "web", "fast-json-patch", "playwright-core", "@microsoft/signalr")
	root := testkit.Root(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The database and its slot go away after the processes started below,
	// which are stopped first.
	dbURL := testkit.Database(t)
	slot := databaseName(t, dbURL)
	db := testkit.Connect(t, dbURL)
	schemaSQL, err := os.ReadFile(filepath.Join(root, "demo", "schema.sql"))
	if err != nil {
		t.Fatal(err)
	}
	testkit.Exec(t, db, string(schemaSQL))

	bin := t.TempDir()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/changecast", "./demo/demoapp")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	secret := randomHex(t, 24)
	hubPort, srvPort := freePort(t), freePort(t)
	env := append(os.Environ(), "CHANGECAST_PG_URL="+dbURL, "CHANGECAST_DEMO_SECRET="+secret)

	// The app first: changecast's CORS needs the page's origin.
	app := start(t, filepath.Join(bin, "demoapp"), env, "-listen", "127.0.0.1:0", "-web", filepath.Join(root, "web"),
		"-negotiate", fmt.Sprintf("http://127.0.0.1:%d/api", hubPort))
	line, err := app.line(10 * time.Second)
	if err != nil || !strings.HasPrefix(line, "demoapp: serving ") {
		t.Fatalf("demoapp did not start (%q, %v):\n%s", line, err, app.logs())
	}
	pageURL := strings.TrimPrefix(line, "demoapp: serving ")
	u, err := url.Parse(pageURL)
	if err != nil {
		t.Fatal(err)
	}

	cc := start(t, filepath.Join(bin, "changecast"), append(env,
		"CHANGECAST_DEMO_SLOT="+slot,
		fmt.Sprintf("CHANGECAST_DEMO_HUB=127.0.0.1:%d", hubPort),
		"CHANGECAST_DEMO_APP_PORT="+u.Port(),
		fmt.Sprintf("CHANGECAST_DEMO_SERVER=127.0.0.1:%d", srvPort),
		"CHANGECAST_LOG=text",
	), "run", "-c", filepath.Join(root, "demo", "demo.yaml"))
	ops := fmt.Sprintf("http://127.0.0.1:%d", srvPort)
	waitFor(t, 30*time.Second, "changecast /readyz", cc, func() bool { return httpOK(ops + "/readyz") })

	// Row 2 changes before the page opens: changecast then knows it (its
	// next change is a patch), while the page loads it from the API
	// without a version, so that patch makes the page refetch it.
	testkit.Exec(t, db, `UPDATE orders SET status = 'paid' WHERE id = 2`)
	waitFor(t, 15*time.Second, "the first change to be published", cc, func() bool { return metric(ops, "changecast_changes_published_total") >= 1 })

	page := start(t, node, nil, filepath.Join(root, "test", "browser", "page.mjs"), pageURL)
	var ready struct {
		Ready bool                         `json:"ready"`
		Error string                       `json:"error"`
		Rows  map[string]map[string]string `json:"rows"`
	}
	page.read(t, 30*time.Second, &ready)
	if !ready.Ready {
		t.Fatalf("the page did not connect: %s\n--- page.mjs:\n%s\n--- changecast:\n%s", ready.Error, page.logs(), cc.logs())
	}
	checkRows(t, db, ready.Rows)
	if got := ready.Rows["2"]["status"]; got != "paid" {
		t.Errorf("row 2 loaded with status %q, want paid", got)
	}

	call := func(cmd map[string]any) map[string]map[string]string {
		t.Helper()
		b, _ := json.Marshal(cmd)
		page.write(t, b)
		var res struct {
			OK    bool                         `json:"ok"`
			Error string                       `json:"error"`
			Rows  map[string]map[string]string `json:"rows"`
			State string                       `json:"state"`
			Stats map[string]int               `json:"stats"`
		}
		page.read(t, 30*time.Second, &res)
		if !res.OK {
			t.Fatalf("%s: %s\npage rows: %v\nstate %s, stats %v\n--- page.mjs:\n%s\n--- changecast:\n%s",
				b, res.Error, res.Rows, res.State, res.Stats, page.logs(), cc.logs())
		}
		return res.Rows
	}
	var gid, aid int64
	// Another tenant's insert first: if it reached this page, it would be
	// there by the time acme's insert shows.
	mustScan(t, db, &gid, `INSERT INTO orders (tenant, item, qty, total) VALUES ('globex', 'not for acme', 1, 1) RETURNING id`)
	mustScan(t, db, &aid, `INSERT INTO orders (tenant, item, qty, total, internal_note) VALUES ('acme', 'from the test', 3, 12.5, 'secret') RETURNING id`)
	ids := strconv.FormatInt(aid, 10)
	rows := call(map[string]any{"cmd": "wait", "id": ids, "cells": map[string]string{"item": "from the test", "qty": "3", "status": "new", "total": "12.50"}})
	if _, ok := rows[strconv.FormatInt(gid, 10)]; ok {
		t.Errorf("globex's row %d shows on acme's page", gid)
	}
	page.write(t, []byte(`{"cmd":"doc","id":"`+ids+`"}`))
	var doc struct {
		Doc map[string]any `json:"doc"`
	}
	page.read(t, 10*time.Second, &doc)
	if doc.Doc["customer"] != "Ada Lovelace" || doc.Doc["tenant"] != "acme" {
		t.Errorf("the page's copy of row %d is %v", aid, doc.Doc)
	}
	if _, ok := doc.Doc["internal_note"]; ok {
		t.Errorf("the page received the excluded column internal_note: %v", doc.Doc)
	}

	// Patch of a document the page received as an upsert.
	testkit.Exec(t, db, `UPDATE orders SET status = 'shipped', qty = 42 WHERE id = $1`, aid)
	call(map[string]any{"cmd": "wait", "id": ids, "cells": map[string]string{"status": "shipped", "qty": "42"}})
	// Patch of a document loaded from the API: refetched.
	testkit.Exec(t, db, `UPDATE orders SET status = 'packed', item = 'refetched' WHERE id = 2`)
	call(map[string]any{"cmd": "wait", "id": "2", "cells": map[string]string{"status": "packed", "item": "refetched"}})
	// Row 1 was never changed: an upsert, then a patch on top of it.
	testkit.Exec(t, db, `UPDATE orders SET qty = 100 WHERE id = 1`)
	call(map[string]any{"cmd": "wait", "id": "1", "cells": map[string]string{"qty": "100"}})
	testkit.Exec(t, db, `UPDATE orders SET qty = 101, status = 'paid' WHERE id = 1`)
	call(map[string]any{"cmd": "wait", "id": "1", "cells": map[string]string{"qty": "101", "status": "paid"}})
	// Deleted, and moved to another tenant: both leave acme's page.
	testkit.Exec(t, db, `DELETE FROM orders WHERE id = $1`, aid)
	call(map[string]any{"cmd": "gone", "id": ids})
	testkit.Exec(t, db, `UPDATE orders SET tenant = 'globex' WHERE id = 1`)
	call(map[string]any{"cmd": "gone", "id": "1"})
	// A row changecast never saw: its delete is routed by the old row
	// (demo/schema.sql sets REPLICA IDENTITY FULL).
	testkit.Exec(t, db, `DELETE FROM orders WHERE id = 5`)
	rows = call(map[string]any{"cmd": "gone", "id": "5"})
	checkRows(t, db, rows)

	page.write(t, []byte(`{"cmd":"stats"}`))
	var st struct {
		State string         `json:"state"`
		Stats map[string]int `json:"stats"`
	}
	page.read(t, 10*time.Second, &st)
	t.Logf("page: state %s, replica stats %v", st.State, st.Stats)
	if st.State != "connected" {
		t.Errorf("page state %q, want connected", st.State)
	}
	for k, min := range map[string]int{"upserts": 2, "patches": 2, "refetches": 1, "deletes": 3} {
		if st.Stats[k] < min {
			t.Errorf("replica stats %s = %d, want at least %d", k, st.Stats[k], min)
		}
	}
	if p := os.Getenv("CHANGECAST_BROWSER_SCREENSHOT"); p != "" {
		call(map[string]any{"cmd": "screenshot", "path": p})
		t.Logf("screenshot: %s", p)
	}
	call(map[string]any{"cmd": "quit"})
	if err := page.wait(10 * time.Second); err != nil {
		t.Errorf("page.mjs: %v\n%s", err, page.logs())
	}
	if t.Failed() {
		t.Logf("--- page.mjs:\n%s\n--- changecast:\n%s\n--- demoapp:\n%s", page.logs(), cc.logs(), app.logs())
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

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
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
// stderr kept for the test's failure messages. It is stopped with SIGTERM
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
