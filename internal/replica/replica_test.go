package replica

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/changecast/changecast/schema/wire"
)

// The replica is the oracle of the end-to-end tests: if it applied a change
// it should have skipped (or skipped one it should have applied), those
// tests would pass on a wrong stream. These cases pin its rules.

// to is an envelope sent to an audience: "group:g", "user:u" or "hub".
func to(audience string, changes ...wire.Entry) *wire.Envelope {
	e := &wire.Envelope{Source: "test", Hub: "h", Changes: changes}
	kind, name, _ := strings.Cut(audience, ":")
	switch kind {
	case "group":
		e.Group = name
	case "user":
		e.User = name
	}
	return e
}

func upsert(coll, id, v, doc string) wire.Entry {
	return wire.Entry{Op: wire.OpUpsert, Collection: coll, ID: id, V: v, Doc: json.RawMessage(doc)}
}

func patch(coll, id, pv, v, ops string) wire.Entry {
	return wire.Entry{Op: wire.OpPatch, Collection: coll, ID: id, PV: pv, V: v, Patch: json.RawMessage(ops)}
}

func del(coll, id, v string) wire.Entry {
	return wire.Entry{Op: wire.OpDelete, Collection: coll, ID: id, V: v}
}

func refetch(coll, id, v string) wire.Entry {
	return wire.Entry{Op: wire.OpRefetch, Collection: coll, ID: id, V: v, Reason: "too_large"}
}

func truncate(coll, v string) wire.Entry {
	return wire.Entry{Op: wire.OpTruncate, Collection: coll, V: v}
}

const setStatus = `[{"op":"replace","path":"/s","value":"paid"}]`

// held renders a snapshot as "collection/id" → "audience v{version} {doc}"
// entries, sorted, so that a case states exactly what the client holds.
func held(t *testing.T, r *Replica) map[string][]string {
	t.Helper()
	docs, _ := r.Snapshot()
	out := map[string][]string{}
	for k, ds := range docs {
		for _, d := range ds {
			// Re-encoded, so that keys are sorted.
			var v any
			if err := json.Unmarshal(d.Doc, &v); err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			b, _ := json.Marshal(v)
			out[k] = append(out[k], fmt.Sprintf("%s v%s %s", d.Audience, d.V, b))
		}
		slices.Sort(out[k])
	}
	return out
}

func TestApply(t *testing.T) {
	tests := []struct {
		name  string
		envs  []*wire.Envelope
		want  map[string][]string
		dirty []string // ids the client would refetch
		stats Stats
	}{
		{
			name: "a newer upsert replaces",
			envs: []*wire.Envelope{to("group:a", upsert("o", "1", "1", `{"s":"new"}`), upsert("o", "1", "2", `{"s":"paid"}`))},
			want: map[string][]string{"o/1": {`group:a v2 {"s":"paid"}`}}, stats: Stats{Changes: 2, Upserts: 2},
		},
		{
			name: "an older upsert is stale",
			envs: []*wire.Envelope{to("group:a", upsert("o", "1", "2", `{"s":"paid"}`)), to("group:a", upsert("o", "1", "1", `{"s":"new"}`))},
			want: map[string][]string{"o/1": {`group:a v2 {"s":"paid"}`}}, stats: Stats{Changes: 2, Upserts: 1, Duplicates: 1},
		},
		{
			name: "the same version again is a duplicate",
			envs: []*wire.Envelope{to("group:a", upsert("o", "1", "7", `{"s":"new"}`), upsert("o", "1", "7", `{"s":"other"}`))},
			want: map[string][]string{"o/1": {`group:a v7 {"s":"new"}`}}, stats: Stats{Changes: 2, Upserts: 1, Duplicates: 1},
		},
		{
			name: "versions compare segment by segment, as numbers",
			envs: []*wire.Envelope{to("hub",
				upsert("o", "1", "9.2", `{"n":1}`), upsert("o", "1", "10.1", `{"n":2}`), // "10.1" < "9.2" as text
				upsert("o", "2", "23803720.9", `{"n":1}`), upsert("o", "2", "23803720.10", `{"n":2}`),
				upsert("o", "3", "18446744073709551615.2", `{"n":2}`), upsert("o", "3", "18446744073709551615.1", `{"n":1}`))},
			want: map[string][]string{
				"o/1": {`hub v10.1 {"n":2}`}, "o/2": {`hub v23803720.10 {"n":2}`}, "o/3": {`hub v18446744073709551615.2 {"n":2}`},
			},
			stats: Stats{Changes: 6, Upserts: 5, Duplicates: 1},
		},
		{
			name: "a patch applies onto its pv",
			envs: []*wire.Envelope{to("group:a", upsert("o", "1", "1.1", `{"s":"new","n":1}`), patch("o", "1", "1.1", "2.1", setStatus))},
			want: map[string][]string{"o/1": {`group:a v2.1 {"n":1,"s":"paid"}`}}, stats: Stats{Changes: 2, Upserts: 1, Patches: 1},
		},
		{
			name: "a patch applies onto a later version with no change since its pv (a snapshot's)",
			envs: []*wire.Envelope{to("group:a", upsert("o", "1", "5", `{"s":"new","n":1}`), patch("o", "1", "3", "7", setStatus))},
			want: map[string][]string{"o/1": {`group:a v7 {"n":1,"s":"paid"}`}}, stats: Stats{Changes: 2, Upserts: 1, Patches: 1},
		},
		{
			name:  "a patch to the held version is a duplicate",
			envs:  []*wire.Envelope{to("group:a", upsert("o", "1", "5", `{"s":"x"}`), patch("o", "1", "3", "5", setStatus))},
			want:  map[string][]string{"o/1": {`group:a v5 {"s":"x"}`}},
			stats: Stats{Changes: 2, Upserts: 1, Duplicates: 1},
		},
		{
			name: "a patch from another version is a gap: refetch",
			envs: []*wire.Envelope{to("group:a", upsert("o", "1", "1", `{"s":"new"}`), patch("o", "1", "2", "3", setStatus))},
			want: map[string][]string{"o/1": {`group:a v1 {"s":"new"}`}}, dirty: []string{"o/1"},
			stats: Stats{Changes: 2, Upserts: 1, Gaps: 1},
		},
		{
			name: "a patch without the document is a gap",
			envs: []*wire.Envelope{to("group:a", patch("o", "1", "1", "2", setStatus))},
			want: map[string][]string{}, dirty: []string{"o/1"},
			stats: Stats{Changes: 1, Gaps: 1},
		},
		{
			name: "a replayed patch is a duplicate, not a gap",
			envs: []*wire.Envelope{
				to("group:a", upsert("o", "1", "1", `{"s":"new"}`), patch("o", "1", "1", "2", setStatus)),
				to("group:a", patch("o", "1", "1", "2", setStatus)),
			},
			want:  map[string][]string{"o/1": {`group:a v2 {"s":"paid"}`}},
			stats: Stats{Changes: 3, Upserts: 1, Patches: 1, Duplicates: 1},
		},
		{
			name:  "a patch older than the held version is a duplicate",
			envs:  []*wire.Envelope{to("group:a", upsert("o", "1", "3", `{"s":"x"}`), patch("o", "1", "1", "2", setStatus))},
			want:  map[string][]string{"o/1": {`group:a v3 {"s":"x"}`}},
			stats: Stats{Changes: 2, Upserts: 1, Duplicates: 1},
		},
		{
			name: "a delete removes; a replay of the older upsert does not bring it back",
			envs: []*wire.Envelope{
				to("group:a", upsert("o", "1", "1", `{"s":"new"}`), del("o", "1", "2")),
				to("group:a", upsert("o", "1", "1", `{"s":"new"}`), patch("o", "1", "1", "2", setStatus)),
			},
			want:  map[string][]string{},
			stats: Stats{Changes: 4, Upserts: 1, Deletes: 1, Duplicates: 2},
		},
		{
			name:  "a delete older than the held version is stale",
			envs:  []*wire.Envelope{to("group:a", upsert("o", "1", "3", `{"s":"x"}`), del("o", "1", "2"))},
			want:  map[string][]string{"o/1": {`group:a v3 {"s":"x"}`}},
			stats: Stats{Changes: 2, Upserts: 1, Duplicates: 1},
		},
		{
			name:  "an upsert newer than the delete comes back",
			envs:  []*wire.Envelope{to("group:a", upsert("o", "1", "1", `{"s":"new"}`), del("o", "1", "2"), upsert("o", "1", "3", `{"s":"again"}`))},
			want:  map[string][]string{"o/1": {`group:a v3 {"s":"again"}`}},
			stats: Stats{Changes: 3, Upserts: 2, Deletes: 1},
		},
		{
			name: "a refetch marks the document; a newer upsert settles it",
			envs: []*wire.Envelope{to("group:a", refetch("o", "1", "1"), refetch("o", "2", "1"), upsert("o", "2", "2", `{}`))},
			want: map[string][]string{"o/2": {`group:a v2 {}`}}, dirty: []string{"o/1"},
			stats: Stats{Changes: 3, Refetches: 2, Upserts: 1},
		},
		{
			name: "a truncate removes the older documents of its collection, in every audience",
			envs: []*wire.Envelope{
				to("group:a", upsert("orders", "1", "1", `{}`), upsert("orders_archive", "1", "1", `{}`)),
				to("group:b", upsert("orders", "2", "2", `{}`), upsert("orders", "3", "6", `{}`)),
				to("hub", truncate("orders", "5")),
				// After it, what is older than the truncate is stale.
				to("group:a", upsert("orders", "1", "4", `{}`), upsert("orders", "4", "7", `{}`)),
			},
			want: map[string][]string{
				"orders_archive/1": {`group:a v1 {}`}, // another collection, though its name starts the same
				"orders/3":         {`group:b v6 {}`}, // newer than the truncate (audiences are not ordered)
				"orders/4":         {`group:a v7 {}`},
			},
			stats: Stats{Changes: 7, Upserts: 5, Truncates: 1, Duplicates: 1},
		},
		{
			name: "an older truncate does not lower the bar",
			envs: []*wire.Envelope{to("hub", truncate("o", "5"), truncate("o", "3"), upsert("o", "1", "4", `{}`))},
			want: map[string][]string{}, stats: Stats{Changes: 3, Truncates: 2, Duplicates: 1},
		},
		{
			name: "audiences hold their own copies",
			envs: []*wire.Envelope{
				to("group:a", upsert("o", "1", "1", `{"g":"a"}`)),
				to("group:b", upsert("o", "1", "1", `{"g":"a"}`)),
				to("user:ann", upsert("o", "1", "1", `{"g":"a"}`)),
				to("hub", upsert("o", "1", "1", `{"g":"a"}`)),
				to("group:a", del("o", "1", "2")),
			},
			want:  map[string][]string{"o/1": {`group:b v1 {"g":"a"}`, `hub v1 {"g":"a"}`, `user:ann v1 {"g":"a"}`}},
			stats: Stats{Changes: 5, Upserts: 4, Deletes: 1},
		},
		{
			// A routing change: one version deletes from the old group and
			// inserts into the new one. The old group's delete must not
			// block the new group's upsert, nor the other way round.
			name: "a move between groups with one version",
			envs: []*wire.Envelope{
				to("group:a", upsert("o", "1", "1", `{"g":"a"}`)),
				to("group:a", del("o", "1", "2")),
				to("group:b", upsert("o", "1", "2", `{"g":"b"}`)),
				to("group:a", upsert("o", "1", "1", `{"g":"a"}`)), // a late replay into the old group
			},
			want:  map[string][]string{"o/1": {`group:b v2 {"g":"b"}`}},
			stats: Stats{Changes: 4, Upserts: 2, Deletes: 1, Duplicates: 1},
		},
		{
			name: "composite ids are distinct documents",
			envs: []*wire.Envelope{to("group:a",
				upsert("o", `[1,"a"]`, "1", `{"k":"a"}`), upsert("o", `[1,"b"]`, "2", `{"k":"b"}`),
				patch("o", `[1,"b"]`, "2", "3", `[{"op":"add","path":"/s","value":"paid"}]`),
				del("o", `[1,"a"]`, "4"))},
			want:  map[string][]string{`o/[1,"b"]`: {`group:a v3 {"k":"b","s":"paid"}`}},
			stats: Stats{Changes: 4, Upserts: 2, Patches: 1, Deletes: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := New()
			for i, e := range tc.envs {
				// Through JSON, as a client gets them.
				b, err := json.Marshal(e)
				if err != nil {
					t.Fatal(err)
				}
				if err := r.ApplyJSON(b); err != nil {
					t.Fatalf("envelope %d: %v", i, err)
				}
			}
			if got := held(t, r); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("holds %q\nwant  %q", got, tc.want)
			}
			_, dirty := r.Snapshot()
			var gotDirty []string
			for k := range dirty {
				gotDirty = append(gotDirty, k)
			}
			slices.Sort(gotDirty)
			if !slices.Equal(gotDirty, tc.dirty) {
				t.Errorf("dirty %q, want %q", gotDirty, tc.dirty)
			}
			if got := r.Counts(); got != tc.stats {
				t.Errorf("stats %+v\nwant  %+v", got, tc.stats)
			}
		})
	}
}

func TestApplyErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  string
		want string
	}{
		{"not JSON", `{"changes":[`, "envelope"},
		{"unknown op", `{"hub":"h","changes":[{"op":"move","collection":"o","id":"1","v":"1"}]}`, `unknown op "move"`},
		{"patch that is no RFC 6902 patch", `{"hub":"h","changes":[{"op":"upsert","collection":"o","id":"1","v":"1","doc":{}},
			{"op":"patch","collection":"o","id":"1","pv":"1","v":"2","patch":{"op":"add"}}]}`, "bad patch"},
		{"patch that does not apply to its pv", `{"hub":"h","changes":[{"op":"upsert","collection":"o","id":"1","v":"1","doc":{}},
			{"op":"patch","collection":"o","id":"1","pv":"1","v":"2","patch":[{"op":"replace","path":"/missing","value":1}]}]}`, "does not apply to v1"},
	} {
		if err := New().ApplyJSON([]byte(tc.env)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

func TestAudience(t *testing.T) {
	for want, e := range map[string]*wire.Envelope{
		"group:g": {Hub: "h", Group: "g"}, "user:u": {Hub: "h", User: "u"}, "hub": {Hub: "h"},
	} {
		if got := Audience(e); got != want {
			t.Errorf("Audience(%+v) = %q, want %q", e, got, want)
		}
	}
}

// TestConcurrentApply: the replica is safe for concurrent use (run with
// -race); envelopes of different documents commute.
func TestConcurrentApply(t *testing.T) {
	r := New()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				id := fmt.Sprintf("%d-%d", g, i)
				if err := r.Apply(to("hub", upsert("o", id, "1", `{"s":"new"}`), patch("o", id, "1", "2", setStatus))); err != nil {
					t.Error(err)
				}
				r.Snapshot()
			}
		})
	}
	wg.Wait()
	docs, _ := r.Snapshot()
	if st := r.Counts(); len(docs) != 200 || st.Upserts != 200 || st.Patches != 200 {
		t.Fatalf("%d documents, stats %+v", len(docs), st)
	}
}

// TestLoad: a snapshot document is taken unless something as new is known,
// and a patch whose pv it covers applies onto it.
func TestLoad(t *testing.T) {
	r := New()
	if !r.Load("group:a", "o", "1", json.RawMessage(`{"s":"new"}`), "10") {
		t.Fatal("load into an empty replica refused")
	}
	if r.Load("group:a", "o", "1", json.RawMessage(`{"s":"old"}`), "9") {
		t.Fatal("an older snapshot document replaced a newer one")
	}
	if err := r.Apply(to("group:a", patch("o", "1", "4", "12", setStatus), del("o", "2", "11"))); err != nil {
		t.Fatal(err)
	}
	if r.Load("group:a", "o", "2", json.RawMessage(`{}`), "11") {
		t.Fatal("a snapshot document at its delete's version came back")
	}
	docs, dirty := r.Snapshot()
	if len(dirty) != 0 || len(docs["o/1"]) != 1 || string(docs["o/1"][0].Doc) != `{"s":"paid"}` || docs["o/1"][0].V != "12" {
		t.Fatalf("docs %v dirty %v", docs, dirty)
	}
}
