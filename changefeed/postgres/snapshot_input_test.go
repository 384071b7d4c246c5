package postgres_test

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/internal/testkit"
)

// TestSnapshotOneDocumentUsesTheKeyIndex: the one-document read of a
// 300,000-row table looks its row up in the primary key's index (the plan
// of the exact statement it runs has the id as the index's condition and
// reads no row it then discards: not a scan of the table, nor a walk of
// the index in key order filtering each row), so the last id is read as
// fast as the first; it still returns that row.
func TestSnapshotOneDocumentUsesTheKeyIndex(t *testing.T) {
	dbURL := testkit.Database(t)
	db := testkit.Connect(t, dbURL)
	// Filled before the slot starts: the stream does not decode the load.
	testkit.Exec(t, db, `CREATE TABLE big (id int8 PRIMARY KEY, v text NOT NULL)`)
	testkit.Exec(t, db, `INSERT INTO big SELECT g, 'row ' || g FROM generate_series(1, 300000) g`)
	testkit.Exec(t, db, `ANALYZE big`)
	slot, _ := startSlot(t, dbURL, "public.big")
	ctx := context.Background()

	q := changefeed.SnapshotQuery{Collection: "public.big", ID: "299990", Limit: 1}
	sql, args, pool, err := slot.SnapshotSQL(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	// The pool is the snapshot's own (simple protocol): the arguments are
	// sent as the statement does.
	rows, err := pool.Query(ctx, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) "+sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	p := strings.Join(plan, "\n")
	if strings.Contains(p, "Seq Scan") || strings.Contains(p, "Filter") || !strings.Contains(p, "Index Cond: (id = ") {
		t.Fatalf("the one-document read does not use the key's index:\n%s\n%s", sql, p)
	}

	page, err := slot.Snapshot(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Docs) != 1 || page.Docs[0].ID != "299990" || page.Docs[0].Doc["v"] != "row 299990" {
		t.Fatalf("one document: %+v", page.Docs)
	}
}

// TestSnapshotRefusesCallerValues: an id that is no key of the table (not
// of the key's type, out of its range, with a NUL, the wrong arity) names
// no document: an empty page, no error. A cursor whose key does not parse
// as the key's types is a BadCursor error (the caller's), not a query
// error. A composite id's numbers keep every digit.
func TestSnapshotRefusesCallerValues(t *testing.T) {
	dbURL := testkit.Database(t)
	db := testkit.Connect(t, dbURL)
	testkit.Exec(t, db, `CREATE TABLE n (id int8 PRIMARY KEY, v text)`)
	testkit.Exec(t, db, `CREATE TABLE c (a int8, b text, v text, PRIMARY KEY (a, b))`)
	slot, h := startSlot(t, dbURL, "public.n", "public.c")
	testkit.Exec(t, db, `INSERT INTO n VALUES (1, 'one')`)
	testkit.Exec(t, db, `INSERT INTO c VALUES (9007199254740993, 'x', 'big')`)
	testkit.Until(t, 10*time.Second, "two inserts", func() bool {
		return h.last() != "" && len(h.at("public.n", h.last())) == 1 && len(h.at("public.c", h.last())) == 1
	})
	ctx := context.Background()

	for _, c := range []struct{ coll, id string }{
		{"public.n", "abc"}, {"public.n", "99999999999999999999999"}, {"public.n", "1\x00"}, {"public.n", "\xff"},
		{"public.n", "1.5"}, {"public.c", `[1]`}, {"public.c", `["x",1]`}, {"public.c", `[1,"x"] x`},
		{"public.c", `[null,"x"]`}, {"public.c", "not json"},
	} {
		page, err := slot.Snapshot(ctx, changefeed.SnapshotQuery{Collection: c.coll, ID: c.id, Limit: 1})
		if err != nil || len(page.Docs) != 0 {
			t.Errorf("id %q of %s: %+v, %v; want no document and no error", c.id, c.coll, page, err)
		}
	}
	page, err := slot.Snapshot(ctx, changefeed.SnapshotQuery{Collection: "public.c", ID: `[9007199254740993,"x"]`, Limit: 1})
	if err != nil || len(page.Docs) != 1 || page.Docs[0].Doc["v"] != "big" {
		t.Fatalf("composite id with a 64-bit number: %+v, %v", page, err)
	}

	for _, cur := range []string{`{"k":["abc"]}`, `{"k":["1e999"]}`, `{"k":["1\u0000"]}`, `{"k":[]}`, `{"k":["1","2"]}`, `[`} {
		after := base64.RawURLEncoding.EncodeToString([]byte(cur))
		_, err := slot.Snapshot(ctx, changefeed.SnapshotQuery{Collection: "public.n", After: after, Limit: 10})
		var bad interface{ BadCursor() bool }
		if !errors.As(err, &bad) || !bad.BadCursor() {
			t.Errorf("cursor %s: %v; want a BadCursor error", cur, err)
		}
	}
	// A good cursor still pages.
	after := base64.RawURLEncoding.EncodeToString([]byte(`{"k":["0"]}`))
	page, err = slot.Snapshot(ctx, changefeed.SnapshotQuery{Collection: "public.n", After: after, Limit: 10})
	if err != nil || len(page.Docs) != 1 {
		t.Fatalf("a cursor before id 1: %+v, %v", page, err)
	}
}
