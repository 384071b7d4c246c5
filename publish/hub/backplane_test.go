package hub

import (
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/changecast/changecast/internal/testkit"
)

// backplaneHub starts a hub with a backplane on the test Redis (through
// redisAddr when set: a proxy the test can cut) and returns it with a
// client of the same Redis and the backplane's key prefix.
func backplaneHub(t *testing.T, cfg Config, redisAddr string, opts ...Option) (*testHub, *redis.Client, string) {
	t.Helper()
	url := testkit.Redis(t)
	prefix := testkit.RedisPrefix(t, url)
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	bpURL := url
	if redisAddr != "" {
		bpURL = "redis://" + redisAddr
	}
	cfg.Backplane = &Backplane{RedisURL: bpURL, Prefix: prefix}
	cfg.AccessKey = NewAccessKey()
	return startHub(t, cfg, opts...), rdb, prefix
}

// Issue 16 item 4: expired members of a group's sorted set are removed
// when the set is written and when it is read, not kept while traffic
// continues (10,044 members after 15 s of anonymous negotiates, 8,694 of
// them expired).
func TestBackplanePrunesExpiredMembers(t *testing.T) {
	t.Parallel()
	cfg := anonCfg()
	cfg.Negotiate.Groups = []string{"lobby"}
	cfg.Negotiate.AnonymousGroupTTL = time.Second
	h, rdb, prefix := backplaneHub(t, cfg, "")
	ctx := t.Context()
	gu := prefix + ":gu:chat:lobby"
	// A member for an hour keeps the set's key alive, as traffic does.
	if err := h.rest.AddUserToGroup(ctx, "chat", "lobby", "bob", time.Hour); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		h.appNegotiate(t, "chat", "")
	}
	if n := rdb.ZCard(ctx, gu).Val(); n != 21 {
		t.Fatalf("%d members after bob and 20 negotiates", n)
	}
	anonymousExpired := func() bool {
		return rdb.ZCount(ctx, gu, "("+strconv.FormatInt(time.Now().UnixMilli(), 10), "+inf").Val() == 1
	}
	testkit.Until(t, 10*time.Second, "the anonymous memberships to expire", anonymousExpired)
	h.appNegotiate(t, "chat", "") // a write
	if n := rdb.ZCard(ctx, gu).Val(); n != 2 {
		t.Fatalf("%d members after a join, want the live ones only (2)", n)
	}
	testkit.Until(t, 10*time.Second, "the last anonymous membership to expire", anonymousExpired)
	if list, err := h.Server.listGroup(ctx, "chat", "lobby"); err != nil || len(list) != 0 { // a read
		t.Fatalf("group listing: %v %v", list, err)
	}
	if n := rdb.ZCard(ctx, gu).Val(); n != 1 {
		t.Fatalf("%d members after a read, want bob only", n)
	}
}

// Issue 16 item 5: maxConnections bounds the negotiated connections with
// a backplane too (300 of 300 negotiates succeeded with a limit of 3,
// each leaving a key in Redis).
func TestBackplaneEnforcesMaxConnections(t *testing.T) {
	t.Parallel()
	cfg := anonCfg()
	cfg.Limits.MaxConnections = 3
	h, rdb, prefix := backplaneHub(t, cfg, "", WithConnectTokenTTL(2*time.Second), withSweepEvery(100*time.Millisecond))
	n := h.appNegotiate(t, "chat", "")
	u := strings.Replace(n.URL, "/client/?", "/client/negotiate?", 1) + "&negotiateVersion=1"
	codes := map[int]int{}
	for range 10 {
		code, _, _ := do(t, "POST", u, n.AccessToken, nil, nil)
		codes[code]++
	}
	if codes[200] != 3 || codes[429] != 7 {
		t.Fatalf("answers %v, want 3×200 and 7×429", codes)
	}
	keys, err := rdb.Keys(t.Context(), prefix+":p:*").Result()
	if err != nil || len(keys) != 3 {
		t.Fatalf("%d pending keys in Redis (%v), want 3", len(keys), err)
	}
	// A negotiated connection opened on this node frees its slot.
	cn := clientNegotiation{}
	testkit.Until(t, 10*time.Second, "the negotiated connections to expire", func() bool { return h.reg.stats().Pending == 0 })
	code, _, body := do(t, "POST", u, n.AccessToken, nil, nil)
	if code != 200 || json.Unmarshal(body, &cn) != nil {
		t.Fatalf("negotiate after the tokens expired: %d %s", code, body)
	}
	dial(t, n, cn)
	if p := h.reg.stats().Pending; p != 0 {
		t.Fatalf("%d negotiated connections held after the WebSocket took its own", p)
	}
}

// Issue 16 item 6: with Redis down, clients and REST callers get 503 with
// a generic message (before: 503 or 404 quoting "dial tcp 127.0.0.1:…:
// connection refused"), and the log says why.
func TestBackplaneErrorsStayInTheLog(t *testing.T) {
	t.Parallel()
	lb := startBalancer(t)
	url := testkit.Redis(t)
	lb.add(strings.TrimPrefix(url, "redis://"))
	logs := &testkit.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h, _, _ := backplaneHub(t, anonCfg(), strings.TrimPrefix(lb.url(), "http://"), WithConnectTokenTTL(time.Minute), WithLogger(log))
	n := h.appNegotiate(t, "chat", "")
	cn := clientNegotiate(t, n) // a token Redis holds, then cannot give
	lb.stop()

	check := func(what string, code int, body []byte) {
		t.Helper()
		if code != 503 || strings.Contains(string(body), "127.0.0.1") || strings.Contains(string(body), "tcp") ||
			!strings.Contains(string(body), `"message":"`+backplaneUnavailable+`"`) {
			t.Errorf("%s with Redis down: %d %s, want 503 and a generic message", what, code, body)
		}
	}
	u := strings.Replace(n.URL, "/client/?", "/client/negotiate?", 1) + "&negotiateVersion=1"
	code, _, body := do(t, "POST", u, n.AccessToken, nil, nil)
	check("client negotiate", code, body)
	code, _, body = do(t, "GET", n.URL+"&id="+cn.ConnectionToken, n.AccessToken, nil, nil)
	check("long poll", code, body)
	code, _, body = h.restCall(t, "GET", "/api/hubs/chat/groups/g/connections?api-version=2024-12-01", "")
	check("REST group listing", code, body)
	code, _, body = h.restCall(t, "PUT", "/api/hubs/chat/users/u/groups/g?api-version=2022-06-01", "")
	check("REST add to group", code, body)
	testkit.Until(t, 5*time.Second, "the cause in the log", func() bool {
		return strings.Contains(logs.String(), "backplane unavailable") && strings.Contains(logs.String(), "127.0.0.1")
	})
}

// stop takes the balancer down: no listener, every connection cut.
func (b *balancer) stop() {
	b.ln.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.conns {
		c.Close()
	}
}
