package postgres_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/changecast/changecast/internal/replica"
	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/publish"
)

// worker is a `changecast run` subprocess whose stdout envelopes feed a
// replica.
type worker struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startWorker(t *testing.T, cfgPath string, rep *replica.Replica) *worker {
	t.Helper()
	cmd := exec.Command(changecastBinary(t), "run", "-c", cfgPath)
	cmd.Env = append(os.Environ(), "CHANGECAST_LOG=text", "CHANGECAST_LOG_LEVEL=warn")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &worker{cmd: cmd, done: make(chan struct{})}
	// A test that fails before it stops the worker still does not leave it
	// running.
	t.Cleanup(func() {
		select {
		case <-w.done:
		default:
			w.cmd.Process.Kill()
			<-w.done
		}
		w.cmd.Wait() // reaps it unless kill or terminate did
	})
	go func() {
		defer close(w.done)
		r := bufio.NewReaderSize(stdout, 1<<20)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				// A line cut by SIGKILL has no newline: it was never
				// acknowledged, so it is read again after the restart.
				return
			}
			if err := rep.ApplyJSON(line); err != nil {
				t.Errorf("apply: %v", err)
			}
		}
	}()
	return w
}

func (w *worker) kill(t *testing.T) {
	w.cmd.Process.Signal(syscall.SIGKILL)
	<-w.done
	w.cmd.Wait()
}

func (w *worker) terminate(t *testing.T) {
	w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
		t.Error("worker did not stop within 30s of SIGTERM")
		w.cmd.Process.Kill()
		<-w.done
	}
	if err := w.cmd.Wait(); err != nil {
		t.Errorf("worker exit: %v (want 0 after SIGTERM)", err)
	}
}

// TestKillAndRestart kills the worker process mid-stream with SIGKILL and
// starts it again: the replica ends complete (duplicates allowed, nothing
// missing), because only published changes were acknowledged.
func TestKillAndRestart(t *testing.T) {
	testkit.Postgres(t)
	// With the persistent shadow store the restarted worker also goes on
	// sending patches against what the killed one published: the replica
	// must then see no patch miss its base (Gaps = 0). Whether a replay is
	// skipped or sent again is not checked here (either converges); the
	// mapper's tests check the skipping.
	for _, store := range []string{"", "\n  shadowStore: {table: shadow}"} {
		t.Run(fmt.Sprintf("shadowStore=%v", store != ""), func(t *testing.T) { killAndRestart(t, store) })
	}
}

func killAndRestart(t *testing.T, shadowStore string) {
	dbURL := testkit.Database(t)
	db := testkit.Connect(t, dbURL)
	ctx := context.Background()
	tables := []string{"public.a"}
	// Without a shadow store the restarted worker knows nothing of the rows
	// it did not see again: under REPLICA IDENTITY DEFAULT it could not tell
	// that an update moved such a row to another group (the old group would
	// keep a stale copy; see the README). FULL carries the old row; the
	// store remembers where each row went.
	testkit.CreateWorkloadTables(t, db, shadowStore == "", tables...)
	cfg := filepath.Join(t.TempDir(), "changecast.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
source:
  postgres: {url: %q, slot: crash, publication: crash, tables: [public.a], statusInterval: 200ms, heartbeat: 300ms}
mappings:
  - {collection: public.a, hub: h, group: "g-{/tenant}"}
publish:
  target: stdout
  batch: {maxChanges: 50, maxDelay: 5ms}%s
`, dbURL, shadowStore)), 0o644)

	rep := replica.New()
	w1 := startWorker(t, cfg, rep)
	testkit.Streaming(t, db, "crash", 30*time.Second)
	wl := testkit.NewWorkload(testkit.Seed(t), tables...)
	writer := testkit.Go(t, func() error {
		wdb, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			return err
		}
		defer wdb.Close(ctx)
		return wl.Run(wdb, 1500)
	})
	// Kill once the worker has published part of the stream.
	testkit.Until(t, 20*time.Second, "first changes", func() bool { return rep.Counts().Changes > 100 })
	w1.kill(t)
	before := rep.Counts().Changes
	time.Sleep(300 * time.Millisecond) // writes go on while nothing reads
	w2 := startWorker(t, cfg, rep)
	if err := testkit.Recv(t, writer, 2*time.Minute, "the writer to finish"); err != nil {
		t.Fatal(err)
	}
	converge(t, db, rep, 60*time.Second, "the replica to match the database after a SIGKILL and restart", tables...)
	w2.terminate(t)
	st := rep.Counts()
	t.Logf("changes before kill: %d; replica: %+v", before, st)
	if shadowStore != "" && st.Gaps != 0 {
		t.Errorf("with the shadow store no patch should miss its base: %+v", st)
	}
}

// TestServerRestart restarts PostgreSQL mid-stream: the source reconnects,
// resumes from confirmed_flush_lsn, and nothing is missing.
func TestServerRestart(t *testing.T) {
	cluster := testkit.PrivateCluster(t)
	base := cluster.URL
	dbURL := testkit.DatabaseOn(t, base)
	ctx := context.Background()
	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Exec(t, db, fmt.Sprintf(testkit.WorkloadDDL, "public.a"))
	db.Close(ctx)
	p := startPipeline(t, dbURL, pipeOpts{tables: []string{"public.a"},
		mappings: []publish.Mapping{{Collection: "public.a", Hub: "h", Group: "g-{/tenant}"}}})

	// An idempotent writer that retries through the restart.
	const n = 600
	writer := testkit.Go(t, func() error {
		var wdb *pgx.Conn
		for i := 1; i <= n; {
			if wdb == nil {
				c, err := pgx.Connect(ctx, dbURL)
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				wdb = c
			}
			_, err := wdb.Exec(ctx, `INSERT INTO a (id, tenant, n) VALUES ($1, $2, 0)
				ON CONFLICT (id) DO UPDATE SET n = a.n + 1`, i%400+1, fmt.Sprintf("t%d", i%3))
			if err != nil {
				wdb.Close(ctx)
				wdb = nil
				time.Sleep(100 * time.Millisecond)
				continue
			}
			i++
			time.Sleep(2 * time.Millisecond)
		}
		if wdb != nil {
			wdb.Close(ctx)
		}
		return nil
	})
	testkit.Until(t, 20*time.Second, "first changes", func() bool { return p.cap.rep.Counts().Changes > 50 })
	if err := cluster.Restart(); err != nil {
		t.Fatal(err)
	}
	testkit.Until(t, 30*time.Second, "the source to reconnect", p.src.Ready)
	testkit.Recv(t, writer, 2*time.Minute, "the writer to finish")
	db, err = pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	converge(t, db, p.cap.rep, 60*time.Second, "the replica to match the database after a server restart", "public.a")
	t.Logf("replica: %+v", p.cap.rep.Counts())
}

func slotLSN(t *testing.T, db *pgx.Conn, slot string) pglogrepl.LSN {
	t.Helper()
	var s string
	if err := db.QueryRow(context.Background(), "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&s); err != nil {
		t.Fatal(err)
	}
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

func currentLSN(t *testing.T, db *pgx.Conn) pglogrepl.LSN {
	t.Helper()
	var s string
	if err := db.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	lsn, _ := pglogrepl.ParseLSN(s)
	return lsn
}

// TestQuietPublication: while the published table is quiet and another
// table writes WAL, confirmed_flush_lsn still advances (heartbeats), so the
// slot does not hold WAL back.
func TestQuietPublication(t *testing.T) {
	dbURL := testkit.Database(t)
	db := testkit.Connect(t, dbURL)
	testkit.Exec(t, db, `CREATE TABLE watched (id int PRIMARY KEY)`)
	testkit.Exec(t, db, `CREATE TABLE busy (id int, pad text)`)
	startPipeline(t, dbURL, pipeOpts{tables: []string{"public.watched"}, heartbeat: 200 * time.Millisecond,
		mappings: []publish.Mapping{{Collection: "public.watched", Hub: "h"}}})
	for i := 0; i < 20; i++ {
		testkit.Exec(t, db, `INSERT INTO busy SELECT g, repeat('x', 200) FROM generate_series(1, 500) g`)
	}
	target := currentLSN(t, db)
	testkit.Until(t, 20*time.Second, fmt.Sprintf("confirmed_flush_lsn to pass %s", target), func() bool { return slotLSN(t, db, "changecast") >= target })
}

// TestFlushOnlyPublished: while the target refuses batches the slot's
// confirmed_flush_lsn does not pass the unpublished change; once the target
// accepts, it does.
func TestFlushOnlyPublished(t *testing.T) {
	dbURL := testkit.Database(t)
	db := testkit.Connect(t, dbURL)
	testkit.Exec(t, db, `CREATE TABLE watched (id int PRIMARY KEY)`)
	var mu sync.Mutex
	down := true
	var refused atomic.Int64
	c := newCapture()
	c.fail = func(b *publish.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		if down {
			refused.Add(1)
			return publish.Retryable(errors.New("target down"), 0)
		}
		return nil
	}
	p := startPipeline(t, dbURL, pipeOpts{tables: []string{"public.watched"}, cap: c,
		mappings: []publish.Mapping{{Collection: "public.watched", Hub: "h"}}})
	testkit.Exec(t, db, `INSERT INTO watched VALUES (1)`)
	after := currentLSN(t, db)
	// Once the target has refused the change, wait for the server to get a
	// standby status update sent after that: had the source confirmed the
	// unpublished change, the slot would show it by then.
	testkit.Until(t, 20*time.Second, "the target to refuse the change", func() bool { return refused.Load() > 0 })
	refusedAt := time.Now()
	testkit.Eventually(t, 20*time.Second, "a standby status update sent after the refusal", func() string {
		var reply *time.Time
		err := db.QueryRow(context.Background(), `SELECT r.reply_time FROM pg_stat_replication r
			JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.slot_name = 'changecast'`).Scan(&reply)
		switch {
		case err != nil:
			return err.Error()
		case reply == nil || !reply.After(refusedAt):
			return fmt.Sprintf("last one sent at %v, refused at %v", reply, refusedAt)
		}
		return ""
	})
	confirmed := slotLSN(t, db, "changecast")
	mu.Lock()
	down = false
	mu.Unlock()
	testkit.Until(t, 20*time.Second, "the change to be published", func() bool { return len(p.cap.changes()) == 1 })
	// The change's version starts with its commit record's LSN. PostgreSQL
	// sends a transaction again after a restart only if its commit record
	// is at or past confirmed_flush_lsn, so that is the bound; heartbeats
	// and other databases' WAL (tests run in parallel) may legitimately
	// move the slot anywhere below it.
	lsnText, _, _ := strings.Cut(p.cap.changes()[0].V, ".")
	n, err := strconv.ParseUint(lsnText, 10, 64)
	if err != nil {
		t.Fatalf("version %q: %v", p.cap.changes()[0].V, err)
	}
	if commit := pglogrepl.LSN(n); confirmed > commit {
		t.Fatalf("confirmed_flush_lsn %s passed the commit %s while the change was unpublished", confirmed, commit)
	}
	testkit.Until(t, 10*time.Second, "confirmed_flush_lsn to pass the change", func() bool { return slotLSN(t, db, "changecast") >= after })
}

// TestStandbyTakeover runs two workers sharing a PostgreSQL lease table:
// one streams, the other waits; when the streaming one is killed, the
// standby takes the slot over within the lease expiry and nothing is lost.
func TestStandbyTakeover(t *testing.T) {
	dbURL := testkit.Database(t)
	db := testkit.Connect(t, dbURL)
	ctx := context.Background()
	testkit.Exec(t, db, fmt.Sprintf(testkit.WorkloadDDL, "public.a"))
	// The standby starts with an empty shadow: under REPLICA IDENTITY FULL a
	// routing change of a row it has not seen is still a move (the old row
	// names the old group); under DEFAULT only publish.shadowStore knows.
	testkit.Exec(t, db, `ALTER TABLE a REPLICA IDENTITY FULL`)
	cfgFor := func(owner string) string {
		p := filepath.Join(t.TempDir(), owner+".yaml")
		os.WriteFile(p, []byte(fmt.Sprintf(`
source:
  postgres: {url: %q, slot: ha, publication: ha, tables: [public.a], statusInterval: 200ms, heartbeat: 300ms}
lease: {store: postgres, owner: %s, acquireInterval: 200ms, renewInterval: 300ms, expiry: 1500ms}
mappings:
  - {collection: public.a, hub: h, group: "g-{/tenant}"}
publish:
  target: stdout
  batch: {maxChanges: 50, maxDelay: 5ms}
`, dbURL, owner)), 0o644)
		return p
	}
	rep := replica.New()
	w1 := startWorker(t, cfgFor("one"), rep)
	testkit.Streaming(t, db, "ha", 30*time.Second)
	w2 := startWorker(t, cfgFor("two"), rep)
	var owner string
	testkit.Until(t, 10*time.Second, "the lease to name worker one", func() bool {
		db.QueryRow(ctx, `SELECT coalesce(owner, '') FROM changecast_leases WHERE id LIKE 'changecast..%'`).Scan(&owner)
		return owner == "one"
	})
	testkit.Exec(t, db, `INSERT INTO a (id, tenant, n) SELECT g, 't' || (g % 3), 0 FROM generate_series(1, 200) g`)
	testkit.Until(t, 20*time.Second, "the first rows", func() bool { return rep.Counts().Changes >= 200 })
	w1.kill(t)
	killed := time.Now()
	testkit.Exec(t, db, `UPDATE a SET n = n + 1, tenant = 't' || (id % 4) WHERE id % 2 = 0`)
	testkit.Exec(t, db, `INSERT INTO a (id, tenant, n) SELECT g, 't' || (g % 3), 0 FROM generate_series(201, 300) g`)
	converge(t, db, rep, 30*time.Second, "the replica to match the database after the standby took over", "public.a")
	took := time.Since(killed)
	db.QueryRow(ctx, `SELECT coalesce(owner, '') FROM changecast_leases WHERE id LIKE 'changecast..%'`).Scan(&owner)
	if owner != "two" {
		t.Errorf("lease owner %q, want two", owner)
	}
	t.Logf("standby caught up %v after the kill; replica %+v", took.Round(time.Millisecond), rep.Counts())
	w2.terminate(t)
}
