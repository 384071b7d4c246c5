package snapshot

import (
	"encoding/json"
	"net/http/httptest"
	"slices"
	"testing"
)

// FuzzCursor: a caller's ?cursor= decodes as ours or is refused; what is
// accepted encodes back to itself.
func FuzzCursor(f *testing.F) {
	for _, c := range []cursor{{}, {Stream: 2, After: "17"}, {Stream: 1 << 40, After: "\x00\xff"}} {
		f.Add(encodeCursor(c))
	}
	for _, s := range []string{"", "%%%", "eyJzIjotMX0", "bnVsbA", "W10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := decodeCursor(s)
		if !ok {
			return
		}
		if c.Stream < 0 {
			t.Fatalf("%q: stream %d", s, c.Stream)
		}
		if back, ok := decodeCursor(encodeCursor(c)); !ok || back != c {
			t.Fatalf("%q: %+v does not survive encoding (%+v)", s, c, back)
		}
	})
}

// FuzzSnapshotRequest: any query of GET /snapshot (page, cursor, limit,
// group, one document) is answered with one of the endpoint's statuses
// and a JSON body; a page holds at most the bound on ?limit= documents.
func FuzzSnapshotRequest(f *testing.F) {
	routes := oneRoute(f)
	src := &pagedSource{n: 25}
	h, err := NewHandler(Config{Routes: routes, Source: src, Auth: anyone{}, Limit: 10, MaxLimit: 20, Prefetch: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(h.Close)
	for _, q := range []string{"hub=h", "hub=h&limit=5", "hub=h&cursor=" + encodeCursor(cursor{After: "10"}),
		"hub=h&cursor=" + encodeCursor(cursor{Stream: 3}), "hub=h&cursor=%%%", "hub=h&limit=-1", "hub=h&limit=99999999999999999999",
		"hub=h&group=g", "hub=h&collection=c&id=1", "hub=h&collection=c", "hub=h&id=1", "hub=other", "cursor=eyJzIjowLCJhIjoiLTUifQ"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, rawQuery string) {
		req := httptest.NewRequest("GET", "/snapshot", nil)
		req.URL.RawQuery = rawQuery
		req.Header.Set("X-User", "ann")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if !slices.Contains([]int{200, 400, 403, 404}, rec.Code) {
			t.Fatalf("%q: status %d %s", rawQuery, rec.Code, rec.Body)
		}
		var body struct {
			Docs []json.RawMessage `json:"docs"`
		}
		if rec.Code == 403 {
			return // anyone{} refuses as http.Error does: text
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%q: %d, not JSON: %v %s", rawQuery, rec.Code, err, rec.Body)
		}
		if len(body.Docs) > 20 {
			t.Fatalf("%q: %d documents, over the bound of 20", rawQuery, len(body.Docs))
		}
	})
}
