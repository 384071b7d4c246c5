package snapshot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/hub"
)

// standbySource streams nothing: every read is ErrNotStreaming, as on a
// PostgreSQL worker that does not hold the slot.
type standbySource struct{}

func (standbySource) Snapshot(context.Context, changefeed.SnapshotQuery) (*changefeed.SnapshotPage, error) {
	return nil, changefeed.ErrNotStreaming
}

// bearer lets in callers whose Authorization is "Bearer user:<name>", and
// records what it saw.
type bearer struct {
	mu   sync.Mutex
	seen []string
}

func (b *bearer) Authorize(r *http.Request, h string) (hub.Caller, error) {
	a := r.Header.Get("Authorization")
	b.mu.Lock()
	b.seen = append(b.seen, a)
	b.mu.Unlock()
	user, ok := strings.CutPrefix(a, "Bearer user:")
	if !ok {
		return hub.Caller{}, &hub.AuthError{Status: http.StatusUnauthorized, Code: "Error.Unauthorized", Msg: "no token"}
	}
	return hub.Caller{Hub: h, User: user}, nil
}

func (b *bearer) Refuse(w http.ResponseWriter, err error) {
	var ae *hub.AuthError
	errors.As(err, &ae)
	http.Error(w, ae.Msg, ae.Status)
}

func (b *bearer) saw() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.seen...)
}

func newTestHandler(t *testing.T, src changefeed.Snapshotter, auth Authorizer, peers *Peers, log *slog.Logger) *Handler {
	t.Helper()
	routes, err := publish.CompileRoutes([]publish.Mapping{{Collection: "c", Hub: "h", Method: "changes"}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(Config{Routes: routes, Source: src, Auth: auth, Limit: 10, Peers: peers, Logger: log, Prefetch: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func getSnapshot(t *testing.T, h http.Handler, query, auth string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("GET", "/api/snapshot?"+query, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestStandbyForwardsToTheStreamingPeer: a worker whose source does not
// stream answers with the streaming peer's pages (the same bytes, cursors
// included), which authorized the caller's own credentials; the one-
// document form too; a dead peer listed first is skipped.
func TestStandbyForwardsToTheStreamingPeer(t *testing.T) {
	leaderAuth := &bearer{}
	leader := newTestHandler(t, &pagedSource{n: 15}, leaderAuth, nil, nil)
	leaderURL := serve(t, http.StripPrefix("/api", leader))
	standby := newTestHandler(t, standbySource{}, &bearer{}, &Peers{URLs: []string{"http://127.0.0.1:1", leaderURL}, Timeout: 5 * time.Second}, nil)

	for _, q := range []string{"hub=h", "hub=h&limit=5"} {
		want := getSnapshot(t, leader, q, "Bearer user:ann")
		got := getSnapshot(t, standby, q, "Bearer user:ann")
		if got.Code != 200 || want.Code != 200 || !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
			t.Fatalf("%s: standby %d %s; leader %d %s", q, got.Code, got.Body, want.Code, want.Body)
		}
		var page struct{ Next string }
		json.Unmarshal(got.Body.Bytes(), &page)
		if page.Next == "" {
			t.Fatalf("%s: no next page in %s", q, got.Body)
		}
		// The next page through the standby, by the cursor the leader made.
		got = getSnapshot(t, standby, q+"&cursor="+page.Next, "Bearer user:ann")
		want = getSnapshot(t, leader, q+"&cursor="+page.Next, "Bearer user:ann")
		if got.Code != 200 || !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
			t.Fatalf("%s next: standby %d %s; leader %s", q, got.Code, got.Body, want.Body)
		}
	}
	one, want := getSnapshot(t, standby, "hub=h&collection=c&id=0", "Bearer user:ann"), getSnapshot(t, leader, "hub=h&collection=c&id=0", "Bearer user:ann")
	if one.Code != 200 || !bytes.Equal(one.Body.Bytes(), want.Body.Bytes()) {
		t.Fatalf("one document: %d %s; leader %s", one.Code, one.Body, want.Body)
	}
	// The leader saw the caller's own token on each forwarded request.
	for _, a := range leaderAuth.saw() {
		if a != "Bearer user:ann" {
			t.Fatalf("the leader saw Authorization %q", a)
		}
	}
	// A caller the standby refuses is refused there, not forwarded.
	n := len(leaderAuth.saw())
	if rec := getSnapshot(t, standby, "hub=h", ""); rec.Code != http.StatusUnauthorized {
		t.Fatalf("no token: %d %s", rec.Code, rec.Body)
	}
	if len(leaderAuth.saw()) != n {
		t.Fatal("a refused caller was forwarded")
	}
}

// TestStandbyWithoutAStreamingPeerAnswers503: when no peer can answer
// (unreachable, or a standby too) the worker answers 503 with Retry-After
// and logs why; two standbys listing each other do not bounce a request.
func TestStandbyWithoutAStreamingPeerAnswers503(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	peers := &Peers{Timeout: 5 * time.Second}
	a := newTestHandler(t, standbySource{}, &bearer{}, peers, log)
	bAuth := &bearer{}
	b := newTestHandler(t, standbySource{}, bAuth, &Peers{Timeout: 5 * time.Second}, slog.New(slog.DiscardHandler))
	aURL, bURL := serve(t, http.StripPrefix("/api", a)), serve(t, http.StripPrefix("/api", b))
	peers.URLs = []string{aURL, bURL, "http://127.0.0.1:1"}
	b.cfg.Peers.URLs = []string{aURL, bURL}

	rec := getSnapshot(t, a, "hub=h", "Bearer user:ann")
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("%d (Retry-After %q) %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	if !strings.Contains(logs.String(), "no peer did") || !strings.Contains(logs.String(), "127.0.0.1:1") {
		t.Fatalf("the log does not say why: %s", logs.String())
	}
	// b was asked once (by a), and did not forward it again.
	if n := len(bAuth.saw()); n != 1 {
		t.Fatalf("b authorized %d requests, want 1", n)
	}
}

// TestPeersNameStandsForEachAddress: a peer named by a host that resolves
// to several addresses (a headless Service) is asked at each; the one that
// answered is asked first next time.
func TestPeersNameStandsForEachAddress(t *testing.T) {
	lead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := lead.Addr().(*net.TCPAddr).Port
	other, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(port)))
	if err != nil {
		lead.Close()
		t.Skipf("no second loopback address: %v", err)
	}
	leader := newTestHandler(t, &pagedSource{n: 3}, &bearer{}, nil, nil)
	otherAuth := &bearer{}
	idle := newTestHandler(t, standbySource{}, otherAuth, nil, slog.New(slog.DiscardHandler))
	for _, srv := range []struct {
		ln net.Listener
		h  http.Handler
	}{{lead, leader}, {other, idle}} {
		s := httptest.NewUnstartedServer(http.StripPrefix("/api", srv.h))
		s.Listener.Close()
		s.Listener = srv.ln
		s.Start()
		t.Cleanup(s.Close)
	}
	var looked []string
	standby := newTestHandler(t, standbySource{}, &bearer{}, &Peers{URLs: []string{"http://workers:" + strconv.Itoa(port)},
		LookupHost: func(_ context.Context, host string) ([]string, error) {
			looked = append(looked, host)
			return []string{"127.0.0.2", "127.0.0.1"}, nil
		}}, nil)
	want := getSnapshot(t, leader, "hub=h", "Bearer user:ann")
	for range 2 {
		got := getSnapshot(t, standby, "hub=h", "Bearer user:ann")
		if got.Code != 200 || !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
			t.Fatalf("standby %d %s; leader %s", got.Code, got.Body, want.Body)
		}
	}
	if len(looked) != 2 || looked[0] != "workers" {
		t.Fatalf("looked up %v", looked)
	}
	// 127.0.0.2 was asked once: the second request went to the leader first.
	if n := len(otherAuth.saw()); n != 1 {
		t.Fatalf("the idle peer was asked %d times, want 1", n)
	}
}

// TestForwarderServesAHubNode: a node without a source (a stand-alone hub
// node) lets the caller in, then relays a worker's /snapshot and /changes
// (any path under the same prefix) with the caller's credentials; a caller
// it refuses is not forwarded; with no worker answering, 503.
func TestForwarderServesAHubNode(t *testing.T) {
	workerAuth := &bearer{}
	mux := http.NewServeMux()
	mux.Handle("GET /api/snapshot", http.StripPrefix("/api", newTestHandler(t, &pagedSource{n: 2}, workerAuth, nil, nil)))
	mux.HandleFunc("GET /api/changes", func(w http.ResponseWriter, r *http.Request) {
		if _, err := workerAuth.Authorize(r, r.URL.Query().Get("hub")); err != nil {
			workerAuth.Refuse(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"after":"` + r.URL.Query().Get("after") + `"}`))
	})
	worker := serve(t, mux)
	node := &Forwarder{Auth: &bearer{}, Peers: &Peers{URLs: []string{worker}}, Logger: slog.New(slog.DiscardHandler)}
	for path, want := range map[string]string{"/api/snapshot?hub=h": `"id":"1"`, "/api/changes?hub=h&after=7": `{"after":"7"}`} {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer user:ann")
		rec := httptest.NewRecorder()
		node.ServeHTTP(rec, req)
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), want) || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %q %s", path, rec.Code, rec.Header().Get("Content-Type"), rec.Body)
		}
	}
	n := len(workerAuth.saw())
	rec := httptest.NewRecorder()
	node.ServeHTTP(rec, httptest.NewRequest("GET", "/api/snapshot?hub=h", nil))
	if rec.Code != http.StatusUnauthorized || len(workerAuth.saw()) != n {
		t.Fatalf("no token: %d, forwarded %d times", rec.Code, len(workerAuth.saw())-n)
	}
	down := &Forwarder{Auth: &bearer{}, Peers: &Peers{URLs: []string{"http://127.0.0.1:1"}}, Logger: slog.New(slog.DiscardHandler)}
	req := httptest.NewRequest("GET", "/api/changes?hub=h", nil)
	req.Header.Set("Authorization", "Bearer user:ann")
	rec = httptest.NewRecorder()
	down.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("no worker: %d %v", rec.Code, rec.Header())
	}
}
