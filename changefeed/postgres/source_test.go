package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/changefeed/postgres"
	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/schema/wire"
)

// TestEnvelopes checks the wire changes of insert, update, delete and
// truncate, and how each column type is encoded.
func TestEnvelopes(t *testing.T) {
	dbURL := testkit.Database(t)
	db := testkit.Connect(t, dbURL)
	testkit.Exec(t, db, `CREATE TYPE mood AS ENUM ('sad', 'happy')`)
	testkit.Exec(t, db, `CREATE TABLE public.items (
		id int8 PRIMARY KEY, tenant text NOT NULL, i2 int2, i4 int4, small numeric, huge numeric, f8 float8, fnan float8,
		b bool, t text, j json, jb jsonb, ts timestamptz, tsn timestamp, d date, u uuid, ia int4[], ia2 int4[][], ta text[], by bytea,
		nul text, m mood, secret text)`)

	p := startPipeline(t, dbURL, pipeOpts{
		tables: []string{"public.items"},
		mappings: []publish.Mapping{{Collection: "public.items", Hub: "items", Group: "tenant-{/tenant}",
			Exclude: []string{"/secret"}}},
	})
	testkit.Exec(t, db, `INSERT INTO items VALUES (1, 'acme', 2, 4, 12.50, 123456789012345678901234.5678, 1.5, 'NaN',
		true, 'hé "q"', '{"a": [1, 2]}', '{"b": {"c": null}}', '2026-11-26 17:00:00.123456+01', '2026-11-26 17:00:00',
		'2026-11-26', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{1,NULL,3}', '{{1,2},{3,4}}', '{"x y",z}', '\xdeadbeef', NULL, 'happy', 'pw')`)
	testkit.Exec(t, db, `UPDATE items SET t = 'changed', i4 = 5 WHERE id = 1`)
	testkit.Exec(t, db, `UPDATE items SET secret = 'other' WHERE id = 1`) // invisible: excluded column only
	testkit.Exec(t, db, `DELETE FROM items WHERE id = 1`)
	testkit.Exec(t, db, `INSERT INTO items (id, tenant) VALUES (2, 'acme')`)
	testkit.Exec(t, db, `TRUNCATE items`)

	testkit.Until(t, 10*time.Second, "5 changes", func() bool { return len(p.cap.changes()) >= 5 })
	p.close(t)
	ch := p.cap.changes()
	if len(ch) != 5 {
		t.Fatalf("got %d changes, want 5: %+v", len(ch), ch)
	}
	ins, upd, del, ins2, tr := ch[0], ch[1], ch[2], ch[3], ch[4]

	if ins.Op != wire.OpUpsert || ins.ID != "1" || ins.Collection != "public.items" {
		t.Fatalf("insert: %+v", ins)
	}
	var doc map[string]any
	d := json.NewDecoder(strings.NewReader(string(ins.Doc)))
	d.UseNumber()
	if err := d.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"id": `1`, "i2": `2`, "i4": `4`, "small": `12.50`, "huge": `"123456789012345678901234.5678"`, "f8": `1.5`,
		"fnan": `"NaN"`, "b": `true`, "t": `"hé \"q\""`, "j": `{"a":[1,2]}`, "jb": `{"b":{"c":null}}`,
		"ts": `"2026-11-26T16:00:00.123456Z"`, "tsn": `"2026-11-26T17:00:00"`, "d": `"2026-11-26"`,
		"u": `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`, "ia": `[1,null,3]`, "ia2": `[[1,2],[3,4]]`, "ta": `["x y","z"]`, "by": `"3q2+7w=="`,
		"nul": `null`, "m": `"happy"`, "tenant": `"acme"`,
	}
	for k, w := range want {
		got, err := json.Marshal(doc[k])
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != w {
			t.Errorf("column %s = %s, want %s", k, got, w)
		}
	}
	if _, ok := doc["secret"]; ok {
		t.Error("excluded column secret was sent")
	}
	if len(doc) != len(want) {
		t.Errorf("doc has %d fields, want %d: %s", len(doc), len(want), ins.Doc)
	}
	if ins.TS == "" || !strings.HasSuffix(ins.TS, "Z") {
		t.Errorf("insert ts = %q", ins.TS)
	}

	if upd.Op != wire.OpPatch || upd.PV != ins.V || wire.CompareVersions(upd.V, ins.V) <= 0 {
		t.Fatalf("update: %+v (insert v %s)", upd, ins.V)
	}
	var patch []map[string]any
	if err := json.Unmarshal(upd.Patch, &patch); err != nil {
		t.Fatal(err)
	}
	paths := map[string]any{}
	for _, op := range patch {
		if op["op"] != "replace" {
			t.Errorf("patch op %v", op)
		}
		paths[op["path"].(string)] = op["value"]
	}
	if len(paths) != 2 || paths["/t"] != "changed" || paths["/i4"] != float64(5) {
		t.Errorf("patch = %s", upd.Patch)
	}
	if del.Op != wire.OpDelete || del.ID != "1" || wire.CompareVersions(del.V, upd.V) <= 0 {
		t.Errorf("delete: %+v", del)
	}
	if ins2.Op != wire.OpUpsert || ins2.ID != "2" {
		t.Errorf("second insert: %+v", ins2)
	}
	if tr.Op != wire.OpTruncate || tr.Collection != "public.items" || tr.ID != "" {
		t.Errorf("truncate: %+v", tr)
	}
	envs := p.cap.envelopes()
	for _, e := range envs {
		if e.Hub != "items" {
			t.Errorf("envelope hub %q", e.Hub)
		}
		for _, c := range e.Changes {
			if c.Op == wire.OpTruncate && e.Group != "" {
				t.Errorf("truncate sent to group %q, want the whole hub", e.Group)
			}
			if c.Op != wire.OpTruncate && e.Group != "tenant-acme" {
				t.Errorf("%s sent to group %q, want tenant-acme", c.Op, e.Group)
			}
		}
	}
}

// TestRoutingChange: when the routing field changes, the old group gets a
// delete and the new group the whole document.
func TestRoutingChange(t *testing.T) {
	dbURL := testkit.Database(t)
	db := testkit.Connect(t, dbURL)
	testkit.Exec(t, db, `CREATE TABLE orders (id int PRIMARY KEY, tenant text, status text)`)
	p := startPipeline(t, dbURL, pipeOpts{tables: []string{"public.orders"},
		mappings: []publish.Mapping{{Collection: "public.orders", Hub: "orders", Group: "t-{/tenant}"}}})
	testkit.Exec(t, db, `INSERT INTO orders VALUES (1, 'a', 'new')`)
	testkit.Exec(t, db, `UPDATE orders SET tenant = 'b' WHERE id = 1`)
	testkit.Until(t, 10*time.Second, "3 changes", func() bool { return len(p.cap.changes()) >= 3 })
	p.close(t)
	var seen []string
	for _, e := range p.cap.envelopes() {
		for _, c := range e.Changes {
			seen = append(seen, e.Group+":"+c.Op)
		}
	}
	want := map[string]bool{"t-a:upsert": true, "t-a:delete": true, "t-b:upsert": true}
	if len(seen) != 3 {
		t.Fatalf("got %v", seen)
	}
	for _, s := range seen {
		if !want[s] {
			t.Fatalf("got %v, want %v", seen, want)
		}
	}
}

// TestStartupErrors: problems the user must fix stop the source with one
// error that names them.
func TestStartupErrors(t *testing.T) {
	dbURL := testkit.Database(t)
	db := testkit.Connect(t, dbURL)
	ctx := context.Background()
	testkit.Exec(t, db, `CREATE TABLE nokey (a int)`)
	testkit.Exec(t, db, `CREATE TABLE good (id int PRIMARY KEY)`)
	testkit.Exec(t, db, `CREATE TABLE nokey2 (a int)`)
	cases := []struct {
		name   string
		tables []string
		keys   map[string][]string
		ident  string
		want   string
	}{
		{"missing table", []string{"public.nope"}, nil, "", "table public.nope does not exist"},
		{"no replica identity", []string{"public.nokey"}, nil, postgres.IdentityKeep, "public.nokey has no primary key and REPLICA IDENTITY DEFAULT"},
		// Made FULL, its changes can be published, but documents need a key.
		{"no key", []string{"public.nokey2"}, nil, "", "table public.nokey2 has no primary key; set key: [/column] in its mapping"},
		{"missing key column", []string{"public.good"}, map[string][]string{"public.good": {"uid"}}, "", "key column uid does not exist in table public.good"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := postgres.New(postgres.Config{URL: dbURL, Slot: "s", Publication: "p", Tables: c.tables, Keys: c.keys, Heartbeat: -1, ReplicaIdentity: c.ident})
			ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			err := src.Run(ctx, make(chan changefeed.Event))
			var fe *postgres.FatalError
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want a FatalError containing %q", err, c.want)
			}
		})
	}
}

// TestPoisonRow: a row too large to send becomes a refetch marker for that
// document, and the stream goes on.
func TestPoisonRow(t *testing.T) {
	dbURL := testkit.Database(t)
	db := testkit.Connect(t, dbURL)
	testkit.Exec(t, db, `CREATE TABLE docs (id int PRIMARY KEY, body text)`)
	p := startPipeline(t, dbURL, pipeOpts{tables: []string{"public.docs"},
		mappings: []publish.Mapping{{Collection: "public.docs", Hub: "h"}},
		batch:    publish.BatchLimits{MaxChanges: 10, MaxBytes: 16 << 10, MaxDelay: 5 * time.Millisecond}})
	testkit.Exec(t, db, `INSERT INTO docs VALUES (1, 'small')`)
	testkit.Exec(t, db, `INSERT INTO docs VALUES (2, repeat('x', 40000))`)
	testkit.Exec(t, db, `INSERT INTO docs VALUES (3, 'after')`)
	testkit.Until(t, 10*time.Second, "3 changes", func() bool { return len(p.cap.changes()) >= 3 })
	ch := p.cap.changes()
	if ch[0].Op != wire.OpUpsert || ch[2].Op != wire.OpUpsert || ch[2].ID != "3" {
		t.Fatalf("changes around the poison row: %+v", ch)
	}
	if ch[1].Op != wire.OpRefetch || ch[1].ID != "2" || ch[1].Reason != "too_large" || ch[1].V == "" {
		t.Fatalf("poison row: %+v", ch[1])
	}
}

// lineCounter counts log lines containing a word.
type lineCounter struct {
	mu    sync.Mutex
	word  string
	lines int
}

func (c *lineCounter) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines += strings.Count(string(b), c.word)
	return len(b), nil
}

// TestUnreachable: a server that refuses every attempt is retried with
// backoff, logged once per attempt window (not once per attempt), and the
// source is not ready; a stop still returns promptly.
func TestUnreachable(t *testing.T) {
	// A listener that hangs up on every connection: each attempt fails at
	// once, and the test counts them instead of guessing how many a sleep
	// allows.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	testkit.Go(t, func() error {
		for {
			c, err := ln.Accept()
			if err != nil {
				return nil
			}
			conns.Add(1)
			c.Close()
		}
	})
	t.Cleanup(func() { ln.Close() })
	lc := &lineCounter{word: "retrying with backoff"}
	src := postgres.New(postgres.Config{URL: "postgres://postgres@" + ln.Addr().String() + "/x?sslmode=disable&connect_timeout=1",
		Slot: "s", Publication: "p", Tables: []string{"public.t"}, Heartbeat: -1, MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(lc, nil))})
	stop := testkit.Run(t, func(ctx context.Context) error { return src.Run(ctx, make(chan changefeed.Event)) })
	const want = 10
	testkit.Eventually(t, 20*time.Second, fmt.Sprintf("%d refused connections", want), func() string {
		if n := conns.Load(); n < want {
			return fmt.Sprintf("%d so far", n)
		}
		return ""
	})
	if src.Ready() {
		t.Error("ready while the server refuses every connection")
	}
	stopped := time.Now()
	if err := stop(); err != nil {
		t.Errorf("Run returned %v after a stop, want nil", err)
	}
	if d := time.Since(stopped); d > 5*time.Second {
		t.Errorf("Run took %v to return after a stop", d)
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.lines != 1 {
		t.Errorf("%d retry log lines after %d refused connections, want 1 per 30 s window", lc.lines, conns.Load())
	}
}

// TestSlotOfAnotherDatabase: slot names are global to a server; a slot of
// another database is a configuration error that names the database.
func TestSlotOfAnotherDatabase(t *testing.T) {
	db1 := testkit.Connect(t, testkit.Database(t))
	url2 := testkit.Database(t)
	db2 := testkit.Connect(t, url2)
	testkit.Exec(t, db1, `CREATE TABLE t (id int PRIMARY KEY)`)
	testkit.Exec(t, db1, `SELECT pg_create_logical_replication_slot('shared_name', 'pgoutput')`)
	testkit.Exec(t, db2, `CREATE TABLE t (id int PRIMARY KEY)`)
	src := postgres.New(postgres.Config{URL: url2, Slot: "shared_name", Publication: "p", Tables: []string{"public.t"}, Heartbeat: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := src.Run(ctx, make(chan changefeed.Event))
	var fe *postgres.FatalError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "belongs to database") {
		t.Fatalf("err = %v", err)
	}
}
