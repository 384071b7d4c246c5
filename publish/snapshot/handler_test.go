package snapshot

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/hub"
)

// pagedSource serves documents 0..n-1 of one collection, counting reads.
type pagedSource struct {
	mu    sync.Mutex
	n     int
	reads []string // the After of each read
}

func (s *pagedSource) Snapshot(_ context.Context, q changefeed.SnapshotQuery) (*changefeed.SnapshotPage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads = append(s.reads, q.After)
	from := 0
	if q.After != "" {
		from, _ = strconv.Atoi(q.After)
	}
	page := &changefeed.SnapshotPage{}
	for i := from; i < s.n && len(page.Docs) < q.Limit; i++ {
		id := strconv.Itoa(i)
		page.Docs = append(page.Docs, changefeed.SnapshotDoc{ID: id, Version: "1", Doc: map[string]any{"id": id}})
	}
	if next := from + len(page.Docs); next < s.n {
		page.Next = strconv.Itoa(next)
	}
	return page, nil
}

func (s *pagedSource) readCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reads)
}

// anyone lets every caller in as user u, on the hub asked for.
type anyone struct{}

func (anyone) Authorize(r *http.Request, h string) (hub.Caller, error) {
	return hub.Caller{Hub: h, User: r.Header.Get("X-User")}, nil
}
func (anyone) Refuse(w http.ResponseWriter, err error) {
	http.Error(w, err.Error(), http.StatusForbidden)
}

// TestNextPageIsReadAhead: once a page with a next one is served, the
// source reads the next page before it is asked for, and that request is
// answered from it (no further read); another caller asking for the same
// cursor is not served the read-ahead page; every page is whole and in
// order.
func TestNextPageIsReadAhead(t *testing.T) {
	routes, err := publish.CompileRoutes([]publish.Mapping{{Collection: "c", Hub: "h", Method: "changes"}})
	if err != nil {
		t.Fatal(err)
	}
	src := &pagedSource{n: 25}
	h, err := NewHandler(Config{Routes: routes, Source: src, Auth: anyone{}, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	get := func(user, cursor string) (ids []string, next string) {
		t.Helper()
		q := "hub=h"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		req := httptest.NewRequest("GET", "/snapshot?"+q, nil)
		req.Header.Set("X-User", user)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var page struct {
			Docs []struct{ ID string } `json:"docs"`
			Next string                `json:"next"`
		}
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &page) != nil {
			t.Fatalf("GET %s: %d %s", q, rec.Code, rec.Body)
		}
		for _, d := range page.Docs {
			ids = append(ids, d.ID)
		}
		return ids, page.Next
	}

	ids, next := get("ann", "")
	if len(ids) != 10 || ids[0] != "0" || next == "" {
		t.Fatalf("first page %v, next %q", ids, next)
	}
	testkit.Until(t, 5*time.Second, "the second page to be read ahead", func() bool { return src.readCount() == 2 })
	ids, next = get("ann", next)
	if len(ids) != 10 || ids[0] != "10" || next == "" {
		t.Fatalf("second page %v, next %q", ids, next)
	}
	testkit.Until(t, 5*time.Second, "the third page to be read ahead", func() bool { return src.readCount() == 3 })
	// bob asks for ann's third page: it is read for him, not taken from hers.
	if ids, _ := get("bob", next); len(ids) != 5 || ids[0] != "20" {
		t.Fatalf("bob's page %v", ids)
	}
	if n := src.readCount(); n != 4 {
		t.Fatalf("%d reads after bob's page, want 4 (his own read)", n)
	}
	ids, last := get("ann", next)
	if len(ids) != 5 || ids[0] != "20" || last != "" {
		t.Fatalf("ann's last page %v, next %q", ids, last)
	}
	if n := src.readCount(); n != 4 {
		t.Fatalf("%d reads after ann's last page, want 4: it was read ahead", n)
	}
}
