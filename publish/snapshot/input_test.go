package snapshot

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/history"
	"github.com/changecast/changecast/publish/hub"
	"github.com/changecast/changecast/publish/inflight"
)

func oneRoute(t testing.TB) []publish.Route {
	t.Helper()
	routes, err := publish.CompileRoutes([]publish.Mapping{{Collection: "c", Hub: "h", Method: "changes"}})
	if err != nil {
		t.Fatal(err)
	}
	return routes
}

// refusingSource refuses every cursor as the sources do one they did not
// make.
type refusingSource struct{}

type badCursor struct{}

func (badCursor) Error() string   { return "not our cursor" }
func (badCursor) BadCursor() bool { return true }

func (refusingSource) Snapshot(_ context.Context, q changefeed.SnapshotQuery) (*changefeed.SnapshotPage, error) {
	if q.After != "" {
		return nil, badCursor{}
	}
	return &changefeed.SnapshotPage{}, nil
}

// TestForeignCursorsAre400LoggedRarely: a cursor that does not decode, or
// that the source refuses, is a 400 whose message quotes nothing of it;
// the refusals are logged at debug, not as errors, and at most once a
// second however many come.
func TestForeignCursorsAre400LoggedRarely(t *testing.T) {
	var logs testkit.Buffer
	h, err := NewHandler(Config{Routes: oneRoute(t), Source: refusingSource{}, Auth: anyone{},
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	start := time.Now()
	for i := range 200 {
		cur := "%%%not-base64<script>"
		if i%2 == 1 {
			// Decodes as ours; the source refuses its key.
			cur = base64.RawURLEncoding.EncodeToString([]byte(`{"s":0,"a":"<script>` + strconv.Itoa(i) + `"}`))
		}
		req := httptest.NewRequest("GET", "/snapshot?hub=h&cursor="+url.QueryEscape(cur), nil)
		req.Header.Set("X-User", "ann")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest || strings.Contains(rec.Body.String(), "script") {
			t.Fatalf("cursor %q: %d %s", cur, rec.Code, rec.Body)
		}
	}
	elapsed := time.Since(start)
	out := logs.String()
	lines := strings.Count(out, "\n")
	if strings.Contains(out, "level=ERROR") || strings.Contains(out, "level=WARN") {
		t.Fatalf("refused cursors logged above debug:\n%s", out)
	}
	if maxLines := int(elapsed/time.Second) + 1; lines < 1 || lines > maxLines {
		t.Fatalf("%d log lines for 200 refusals in %v, want 1..%d:\n%s", lines, elapsed, maxLines, out)
	}
}

// blockingSource holds every read until released, counting those held.
type blockingSource struct {
	mu      sync.Mutex
	held    int
	release chan struct{}
}

func (s *blockingSource) Snapshot(ctx context.Context, _ changefeed.SnapshotQuery) (*changefeed.SnapshotPage, error) {
	s.mu.Lock()
	s.held++
	s.mu.Unlock()
	select {
	case <-s.release:
	case <-ctx.Done():
	}
	return &changefeed.SnapshotPage{}, nil
}

func (s *blockingSource) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// blockingStore holds every history read until released.
type blockingStore struct {
	history.Store
	src *blockingSource
}

func (s blockingStore) Read(ctx context.Context, _, epoch string, _ uint64, _ int) ([][]byte, bool, error) {
	_, err := s.src.Snapshot(ctx, changefeed.SnapshotQuery{})
	return nil, false, err
}

// TestReadsPerCaller: a caller with its reads in flight (snapshot pages,
// one-document reads and /changes together) gets 429 with Retry-After for
// one more, at once, without the source being asked; another caller is
// served meanwhile; once a read ends the caller is served again.
func TestReadsPerCaller(t *testing.T) {
	src := &blockingSource{release: make(chan struct{})}
	reads := inflight.New(2)
	h, err := NewHandler(Config{Routes: oneRoute(t), Source: src, Auth: anyone{}, Reads: reads, Prefetch: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	changes := &history.Handler{Store: blockingStore{src: src}, Auth: anyone{}, Reads: reads}
	do := func(handler http.Handler, user, path string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("X-User", user)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		return rec
	}
	var wg sync.WaitGroup
	codes := make(chan int, 3)
	for _, path := range []string{"/snapshot?hub=h", "/snapshot?hub=h&collection=c&id=1"} {
		wg.Go(func() { codes <- do(h, "ann", path).Code })
	}
	testkit.Until(t, 5*time.Second, "ann's two reads to be in flight", func() bool { return src.count() == 2 })
	for _, c := range []struct {
		handler http.Handler
		path    string
	}{{h, "/snapshot?hub=h"}, {changes, "/changes?hub=h&epoch=e&after=0"}} {
		rec := do(c.handler, "ann", c.path)
		if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
			t.Fatalf("ann's third read %s: %d %q %s", c.path, rec.Code, rec.Header().Get("Retry-After"), rec.Body)
		}
	}
	if n := src.count(); n != 2 {
		t.Fatalf("%d reads reached the source, want ann's 2", n)
	}
	wg.Go(func() { codes <- do(changes, "bob", "/changes?hub=h&epoch=e&after=0").Code })
	testkit.Until(t, 5*time.Second, "bob's read to be in flight beside ann's", func() bool { return src.count() == 3 })
	close(src.release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c == http.StatusTooManyRequests {
			t.Fatalf("a read within the limit answered %d", c)
		}
	}
	if rec := do(h, "ann", "/snapshot?hub=h"); rec.Code != http.StatusOK {
		t.Fatalf("ann after her reads ended: %d %s", rec.Code, rec.Body)
	}
}

// anonymous lets every caller in anonymously: a new user id each request,
// as negotiate gives one.
type anonymous struct {
	mu sync.Mutex
	n  int
}

func (a *anonymous) Authorize(r *http.Request, h string) (hub.Caller, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n++
	return hub.Caller{Hub: h, User: "anon-" + strconv.Itoa(a.n), Anonymous: true}, nil
}
func (*anonymous) Refuse(w http.ResponseWriter, err error) {
	http.Error(w, err.Error(), http.StatusForbidden)
}

// TestAnonymousReadAheadIsServed: an anonymous caller walking a snapshot
// is served the pages read ahead for it (it keeps its cursor, not its user
// id): an 8-page walk reads 8 pages (14 when each read-ahead page was
// kept for a user id never seen again).
func TestAnonymousReadAheadIsServed(t *testing.T) {
	src := &pagedSource{n: 80}
	h, err := NewHandler(Config{Routes: oneRoute(t), Source: src, Auth: &anonymous{}, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	cursor, pages, docs := "", 0, 0
	for {
		q := "hub=h"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/snapshot?"+q, nil))
		var page struct {
			Docs []struct{ ID string } `json:"docs"`
			Next string                `json:"next"`
		}
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &page) != nil {
			t.Fatalf("GET %s: %d %s", q, rec.Code, rec.Body)
		}
		pages++
		docs += len(page.Docs)
		if page.Next == "" {
			break
		}
		cursor = page.Next
		want := pages + 1
		testkit.Until(t, 5*time.Second, "the next page to be read ahead", func() bool { return src.readCount() >= want })
	}
	if pages != 8 || docs != 80 {
		t.Fatalf("%d pages, %d documents; want 8 and 80", pages, docs)
	}
	if n := src.readCount(); n != 8 {
		t.Fatalf("%d page reads for an 8-page walk, want 8 (every read-ahead page served)", n)
	}
}
