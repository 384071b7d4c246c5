package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/changefeed/postgres"
	"github.com/changecast/changecast/internal/replica"
	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/lease"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/schema/template"
	"github.com/changecast/changecast/schema/wire"
	"github.com/jackc/pglogrepl"
)

// history is a Consumer that records every change the stream decodes, in
// order, and acknowledges it at once: the oracle of what a document was
// at any version.
type history struct {
	mu      sync.Mutex
	changes []*changefeed.Change
}

func (h *history) Consume(ctx context.Context, in <-chan changefeed.Delivery, ack func(...uint64)) error {
	for d := range in {
		h.mu.Lock()
		h.changes = append(h.changes, d.Change)
		h.mu.Unlock()
		ack(d.Seq)
	}
	return nil
}

// at returns every document of coll as it was at version v: the After of
// its last change at or before v (nil: absent).
func (h *history) at(coll, v string) map[string]map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]map[string]any{}
	for _, c := range h.changes {
		if c.Collection != coll || wire.CompareVersions(c.Version, v) > 0 {
			continue
		}
		switch c.Op {
		case changefeed.Truncate:
			clear(out)
		case changefeed.Delete:
			delete(out, c.ID)
		default:
			if c.PrevID != "" {
				delete(out, c.PrevID)
			}
			out[c.ID] = c.After
		}
	}
	return out
}

func (h *history) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.changes)
}

func (h *history) last() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.changes) == 0 {
		return ""
	}
	return h.changes[len(h.changes)-1].Version
}

// startSlot runs a Slot under a Runner (memory leases) into a history.
func startSlot(t *testing.T, dbURL string, tables ...string) (*postgres.Slot, *history) {
	t.Helper()
	cfg := postgres.Config{URL: dbURL, Slot: "snap", Publication: "snap", Tables: tables, Heartbeat: -1,
		StatusInterval: 200 * time.Millisecond, Logger: testLogger(t)}
	slot := &postgres.Slot{Config: cfg, Processor: "test"}
	t.Cleanup(slot.Close)
	h := &history{}
	r, err := changefeed.NewRunner(changefeed.RunnerConfig{Partitions: slot, Store: lease.NewMemoryStore(),
		NewConsumer: func(*lease.Lease) (changefeed.Consumer, error) { return h, nil },
		Processor:   changefeed.ProcessorConfig{Logger: testLogger(t)}, AcquireInterval: 50 * time.Millisecond,
		RenewInterval: 100 * time.Millisecond, Expiry: time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Run(t, r.Run)
	testkit.Until(t, 20*time.Second, "the slot to stream", r.Ready)
	return slot, h
}

func match(field, value string) changefeed.FieldMatch {
	p, _ := template.ParsePointer(field)
	return changefeed.FieldMatch{Field: p, Value: value}
}

// TestSnapshotIsExact: while a writer inserts, updates, deletes and moves
// rows between tenants as fast as it can, every snapshot page holds, at
// each document's version, exactly the rows of its tenant as the stream
// says they were then: no stale row, none missing, none extra.
func TestSnapshotIsExact(t *testing.T) {
	dbURL := testkit.Database(t)
	db := testkit.Connect(t, dbURL)
	testkit.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY, tenant text NOT NULL, n int NOT NULL, meta jsonb NOT NULL)`)
	slot, h := startSlot(t, dbURL, "public.t")

	ctx, stop := context.WithCancel(context.Background())
	writes := testkit.Go(t, func() error {
		rng := rand.New(rand.NewPCG(1, 2))
		for n := 0; ctx.Err() == nil; n++ {
			id := rng.IntN(300)
			tenant := fmt.Sprint("t", rng.IntN(3))
			var err error
			switch rng.IntN(4) {
			case 0:
				_, err = db.Exec(ctx, `DELETE FROM t WHERE id = $1`, id)
			default:
				_, err = db.Exec(ctx, `INSERT INTO t VALUES ($1, $2, $3, jsonb_build_object('tenant', $2::text))
					ON CONFLICT (id) DO UPDATE SET tenant = $2, n = t.n + 1, meta = jsonb_build_object('tenant', $2::text)`, id, tenant, n)
			}
			if err != nil && ctx.Err() == nil {
				return err
			}
		}
		return nil
	})
	defer func() {
		stop()
		if err := <-writes; err != nil {
			t.Error(err)
		}
	}()
	testkit.Until(t, 10*time.Second, "a few hundred changes", func() bool { return h.len() > 300 })

	for i := range 12 {
		q := changefeed.SnapshotQuery{Collection: "public.t", Limit: 40}
		tenant := fmt.Sprint("t", i%3)
		if i%2 == 0 {
			q.Match = []changefeed.FieldMatch{match("/tenant", tenant)}
		} else {
			q.Match = []changefeed.FieldMatch{match("/meta/tenant", tenant)}
		}
		var docs []changefeed.SnapshotDoc
		for {
			page, err := slot.Snapshot(context.Background(), q)
			if err != nil {
				t.Fatal(err)
			}
			docs = append(docs, page.Docs...)
			// Check each page against the history at its versions.
			checkPage(t, h, tenant, page, q.After)
			if page.Next == "" {
				break
			}
			q.After = page.Next
		}
		if len(docs) == 0 {
			t.Fatalf("snapshot %d of %s is empty", i, tenant)
		}
	}
}

// checkPage: every document equals the history at its version, and every
// row of the tenant at that version within the page's key range is there.
func checkPage(t *testing.T, h *history, tenant string, page *changefeed.SnapshotPage, after string) {
	t.Helper()
	testkit.Until(t, 10*time.Second, "the history to reach the page's versions", func() bool {
		for _, d := range page.Docs {
			if wire.CompareVersions(h.last(), d.Version) < 0 {
				return false
			}
		}
		return true
	})
	byVersion := map[string][]changefeed.SnapshotDoc{}
	for _, d := range page.Docs {
		byVersion[d.Version] = append(byVersion[d.Version], d)
	}
	for v, docs := range byVersion {
		state := h.at("public.t", v)
		for _, d := range docs {
			want, ok := state[d.ID]
			if d.Deleted {
				if ok && want["tenant"] == tenant {
					t.Fatalf("doc %s reported deleted at v%s, but the stream says it was there: %v", d.ID, v, want)
				}
				continue
			}
			if !ok {
				t.Fatalf("doc %s at v%s: the stream says it did not exist then", d.ID, v)
			}
			if !reflect.DeepEqual(testkit.NormNumbers(want), testkit.NormNumbers(d.Doc)) || want["tenant"] != tenant {
				t.Fatalf("doc %s at v%s:\n got %v\nwant %v (tenant %s)", d.ID, v, d.Doc, want, tenant)
			}
		}
	}
}

// TestSnapshotOneDocument reads one document by id, and reports one that
// does not exist as absent.
func TestSnapshotOneDocument(t *testing.T) {
	dbURL := testkit.Database(t)
	db := testkit.Connect(t, dbURL)
	testkit.Exec(t, db, `CREATE TABLE t (a text, b int, v text, PRIMARY KEY (a, b))`)
	slot, h := startSlot(t, dbURL, "public.t")
	testkit.Exec(t, db, `INSERT INTO t VALUES ('x', 1, 'one'), ('x', 2, 'two')`)
	testkit.Until(t, 10*time.Second, "two inserts", func() bool { return h.last() != "" && len(h.at("public.t", h.last())) == 2 })
	page, err := slot.Snapshot(context.Background(), changefeed.SnapshotQuery{Collection: "public.t", ID: `["x",2]`})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Docs) != 1 || page.Docs[0].ID != `["x",2]` || page.Docs[0].Doc["v"] != "two" || wire.CompareVersions(page.Docs[0].Version, h.last()) <= 0 {
		t.Fatalf("one document: %+v (stream at %s)", page.Docs, h.last())
	}
	page, err = slot.Snapshot(context.Background(), changefeed.SnapshotQuery{Collection: "public.t", ID: `["x",3]`})
	if err != nil || len(page.Docs) != 0 {
		t.Fatalf("a missing document: %+v %v", page, err)
	}
}

// hubSim maps every change with a real mapper, as the pipeline does, and
// keeps the envelopes in order: what a hub would send to each group.
type hubSim struct {
	mu   sync.Mutex
	m    *publish.Mapper
	envs []*wire.Envelope
}

func (hs *hubSim) Consume(ctx context.Context, in <-chan changefeed.Delivery, ack func(...uint64)) error {
	for d := range in {
		outs := hs.m.Map(d.Change, nil)
		hs.mu.Lock()
		for _, o := range outs {
			hs.envs = append(hs.envs, &wire.Envelope{Hub: o.Audience.Hub, Group: o.Audience.Group, Changes: []wire.Entry{o.Change}})
		}
		hs.mu.Unlock()
		ack(d.Seq)
	}
	return nil
}

func (hs *hubSim) mark() int {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return len(hs.envs)
}

func (hs *hubSim) since(i int, group string) []*wire.Envelope {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	var out []*wire.Envelope
	for _, e := range hs.envs[i:] {
		if e.Group == group {
			out = append(out, e)
		}
	}
	return out
}

// TestSnapshotPlusStream: clients that connect (start receiving their
// group's envelopes) at random moments while a writer runs, then load the
// snapshot and apply what they received, end with exactly the rows of
// their group, and never need a refetch.
func TestSnapshotPlusStream(t *testing.T) {
	dbURL := testkit.Database(t)
	db := testkit.Connect(t, dbURL)
	testkit.CreateWorkloadTables(t, db, false, "public.orders")
	cfg := postgres.Config{URL: dbURL, Slot: "sim", Publication: "sim", Tables: []string{"public.orders"}, Heartbeat: -1,
		StatusInterval: 200 * time.Millisecond, Logger: testLogger(t)}
	slot := &postgres.Slot{Config: cfg, Processor: "test"}
	t.Cleanup(slot.Close)
	mappings := []publish.Mapping{{Collection: "public.orders", Hub: "h", Group: "g-{/tenant}"}}
	m, err := publish.NewMapper(mappings, publish.MapperOptions{ShadowSize: 1 << 20, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	routes, _ := publish.CompileRoutes(mappings)
	hs := &hubSim{m: m}
	r, err := changefeed.NewRunner(changefeed.RunnerConfig{Partitions: slot, Store: lease.NewMemoryStore(),
		NewConsumer: func(*lease.Lease) (changefeed.Consumer, error) { return hs, nil },
		Processor:   changefeed.ProcessorConfig{Logger: testLogger(t)}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Run(t, r.Run)
	testkit.Until(t, 20*time.Second, "the slot to stream", r.Ready)

	w := testkit.NewWorkload(testkit.Seed(t), "public.orders")
	if err := w.Run(db, 200); err != nil {
		t.Fatal(err)
	}
	type client struct {
		group string
		from  int
		rep   *replica.Replica
	}
	// The writer goes on while clients connect and read their snapshots.
	wdb := testkit.Connect(t, dbURL)
	ctx, stop := context.WithCancel(context.Background())
	writes := testkit.Go(t, func() error {
		for ctx.Err() == nil {
			if err := w.Run(wdb, 5); err != nil {
				return err
			}
		}
		return nil
	})
	var clients []*client
	for i := range 12 {
		time.Sleep(time.Duration(rand.IntN(100)) * time.Millisecond) // clients join at random moments
		c := &client{group: fmt.Sprintf("g-t%d", i%4), rep: replica.New()}
		c.from = hs.mark() // connected: from here on it receives its group's envelopes
		match, _ := routes[0].Match(c.group)
		q := changefeed.SnapshotQuery{Collection: "public.orders", Match: match, Limit: 50}
		for {
			page, err := slot.Snapshot(context.Background(), q)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range page.Docs {
				if d.Deleted {
					c.rep.Load("group:"+c.group, "public.orders", d.ID, nil, d.Version)
					continue
				}
				b, _ := routes[0].Encode(nil, d.Doc)
				c.rep.Load("group:"+c.group, "public.orders", d.ID, b, d.Version)
			}
			if page.Next == "" {
				break
			}
			q.After = page.Next
		}
		clients = append(clients, c)
	}
	stop()
	if err := <-writes; err != nil {
		t.Fatal(err)
	}
	// Everything written is mapped once the stream passes the last write
	// (the insert position: with synchronous_commit off the last commits
	// may not be written yet).
	var lsn string
	db.QueryRow(context.Background(), "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn)
	testkit.Until(t, 20*time.Second, "the stream to pass the last write", func() bool {
		var confirmed string
		db.QueryRow(context.Background(), "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'sim'").Scan(&confirmed)
		a, _ := pglogrepl.ParseLSN(confirmed)
		b, _ := pglogrepl.ParseLSN(lsn)
		return a >= b
	})
	want := testkit.DBDocs(t, db, "public.orders", "id")
	for i, c := range clients {
		for _, e := range hs.since(c.from, c.group) {
			if err := c.rep.Apply(e); err != nil {
				t.Fatalf("client %d: %v", i, err)
			}
		}
		mine := map[string][]byte{}
		for k, b := range want {
			if testkit.NormJSON(t, b).(map[string]any)["tenant"] == strings.TrimPrefix(c.group, "g-") {
				mine[k] = b
			}
		}
		if d := diffReplica(t, c.rep, mine, func(map[string]any) string { return "group:" + c.group }, "public.orders"); d != "" {
			t.Errorf("client %d (%s):\n%s", i, c.group, d)
		}
		// A gap that a later change settles (an old patch of a document
		// deleted before the snapshot, then its delete) costs a client that
		// defers its refetches nothing; one left open would be a refetch.
		if _, dirty := c.rep.Snapshot(); len(dirty) != 0 {
			t.Errorf("client %d (%s): %d documents would need a refetch: %v", i, c.group, len(dirty), dirty)
		}
	}
}
