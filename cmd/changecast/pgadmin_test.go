package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/worker"
	"github.com/jackc/pglogrepl"
)

// TestPostgresLeasesAndReset: `leases list` shows the slot and its lease
// owner; `checkpoint reset --to now` moves a slot that a worker is streaming
// from, and the worker carries on from there.
func TestPostgresLeasesAndReset(t *testing.T) {
	dbURL := testkit.Database(t)
	db := testkit.Connect(t, dbURL)
	ctx := context.Background()
	if _, err := db.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY, v text)"); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opsAddr := ln.Addr().String()
	ln.Close()
	cfgPath := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
source:
  postgres: {url: %q, slot: adm, publication: adm, tables: [public.t], statusInterval: 200ms, heartbeat: -1s}
lease: {store: postgres, owner: admin-test, acquireInterval: 100ms, renewInterval: 200ms, expiry: 2s}
mappings: [{collection: public.t, hub: h}]
publish: {target: stdout, batch: {maxDelay: 1ms}}
server: {listen: %q, adminToken: s3cret}
`, dbURL, opsAddr)), 0o644)
	cfg, err := loadConfig(cfgPath, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	out := &testkit.Buffer{}
	// Every reset below is routine: the worker logs nothing at WARN or
	// ERROR (the ended replication connection was a WARN).
	logs := &testkit.Buffer{}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- worker.Run(wctx, cfg, worker.Options{Stdout: out, Stderr: os.Stderr, Logger: slog.New(slog.NewTextHandler(io.MultiWriter(os.Stderr, logs), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
		if s := logs.String(); s != "" {
			t.Errorf("the worker logged at WARN or above during routine resets:\n%s", s)
		}
	}()
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		testkit.Until(t, 20*time.Second, what, cond)
	}
	testkit.Streaming(t, db, "adm", 30*time.Second)
	db.Exec(ctx, "INSERT INTO t VALUES (1, 'a')")
	waitUntil("the first change", func() bool { return strings.Contains(out.String(), `"id":"1"`) })

	code, list, errs := runCLI(t, "leases", "list", "-c", cfgPath)
	if code != 0 || !strings.Contains(list, "adm") || !strings.Contains(list, "true") || !strings.Contains(list, "admin-test") || !strings.Contains(list, " bytes") {
		t.Fatalf("leases list: code %d\n%s%s", code, list, errs)
	}
	// --no-lag leaves the lag out for PostgreSQL too (it was ignored).
	code, list, errs = runCLI(t, "leases", "list", "-c", cfgPath, "--no-lag")
	if code != 0 || !strings.Contains(list, "admin-test") || strings.Contains(list, " bytes") {
		t.Fatalf("leases list --no-lag: code %d\n%s%s", code, list, errs)
	}
	// An LSN behind the slot is refused saying where the slot is, not with
	// the server's raw error, and without ending the worker's connection.
	var slotAt string
	db.QueryRow(ctx, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'adm'").Scan(&slotAt)
	code, _, errs = runCLI(t, "checkpoint", "reset", "-c", cfgPath, "--to", "0/1")
	if code != 2 || !strings.Contains(errs, "--to 0/1 is behind slot adm: the slot is at ") || !strings.Contains(errs, "a slot only moves forward") {
		t.Fatalf("reset below the slot (at %s): code %d: %s", slotAt, code, errs)
	}
	// Move the slot past WAL that changecast never read: with heartbeats
	// off, only the reset can take it beyond these writes.
	db.Exec(ctx, "CREATE TABLE other (x int)")
	var nowLSN string
	db.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&nowLSN)
	db.Exec(ctx, "INSERT INTO other SELECT generate_series(1, 1000)")
	target, _ := pglogrepl.ParseLSN(nowLSN)
	// The test cluster runs with synchronous_commit=off, and a slot advances
	// only up to flushed WAL: let the WAL writer flush (wal_writer_delay).
	time.Sleep(500 * time.Millisecond)
	code, msg, errs := runCLI(t, "checkpoint", "reset", "-c", cfgPath, "--to", "now")
	if code != 0 {
		t.Fatalf("reset: code %d: %s%s", code, msg, errs)
	}
	var confirmed string
	db.QueryRow(ctx, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'adm'").Scan(&confirmed)
	if got, _ := pglogrepl.ParseLSN(confirmed); got <= target {
		t.Fatalf("slot at %s after reset, want past %s", confirmed, nowLSN)
	}
	// The worker reconnects and streams on from the new position.
	db.Exec(ctx, "INSERT INTO t VALUES (2, 'b')")
	waitUntil("a change after the reset", func() bool { return strings.Contains(out.String(), `"id":"2"`) })

	// --resnapshot republishes every row, whole, beside the stream.
	before := strings.Count(out.String(), `"id":"1"`)
	if code, msg, errs := runCLI(t, "checkpoint", "reset", "-c", cfgPath, "--resnapshot"); code != 0 || !strings.Contains(msg, "republish every row") {
		t.Fatalf("--resnapshot: code %d: %s%s", code, msg, errs)
	}
	waitUntil("row 1 republished", func() bool { return strings.Count(out.String(), `"id":"1"`) > before })
	if code, _, errs := runCLI(t, "checkpoint", "reset", "-c", cfgPath, "--resnapshot", "--to", "now"); code != 2 || !strings.Contains(errs, "not both") {
		t.Fatalf("--resnapshot with --to: code %d: %s", code, errs)
	}

	if code, _, errs := runCLI(t, "checkpoint", "reset", "-c", cfgPath, "--to", "beginning"); code != 2 || !strings.Contains(errs, "moves only forward") {
		t.Fatalf("reset to beginning: code %d: %s", code, errs)
	}

	// The same through the admin API, behind its bearer token.
	call := func(method, path, token string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+opsAddr+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := call("GET", "/admin/leases", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong token: %d, want 401", code)
	}
	if code, body := call("GET", "/admin/leases", "s3cret"); code != 200 || !strings.Contains(body, `"slot":"adm"`) || !strings.Contains(body, `"owner":"admin-test"`) {
		t.Errorf("GET /admin/leases: %d %s", code, body)
	}
	if code, body := call("POST", "/admin/checkpoint/reset?to=beginning", "s3cret"); code != http.StatusBadRequest || !strings.Contains(body, "moves only forward") {
		t.Errorf("reset to beginning over HTTP: %d %s", code, body)
	}
	if code, body := call("POST", "/admin/checkpoint/reset?to=now", "s3cret"); code != 200 || !strings.Contains(body, `"slot":"adm"`) || !strings.Contains(body, `"lsn":"`) {
		t.Errorf("reset to now over HTTP: %d %s", code, body)
	}
	// The reset ended the replication connection; the worker is ready again
	// once it has reconnected.
	waitUntil("/readyz after the reset", func() bool { code, _ := call("GET", "/readyz", ""); return code == 200 })
}
