package hub

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"

	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/publish/signalr"
)

// withSweepEvery makes the hub sweep expiries this often (tests only).
func withSweepEvery(d time.Duration) Option { return func(o *options) { o.sweepEvery = d } }

// clientToken signs a client token for user on hub h, as :generateToken
// or a REST caller holding the key would.
func clientToken(t *testing.T, h *testHub, hub, user string, ttl time.Duration) negotiated {
	t.Helper()
	u := h.Endpoint() + "/client/?hub=" + hub
	tok, err := signalr.SignAccessToken(h.AccessKey(), u, user, ttl, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return negotiated{URL: u, AccessToken: tok}
}

// dialStatus opens the WebSocket of a client URL (id may be empty) and
// returns the HTTP status: 101 when it was accepted (then closed).
func dialStatus(t *testing.T, n negotiated, id string, hdr http.Header) int {
	t.Helper()
	u := "ws" + strings.TrimPrefix(n.URL, "http")
	if id != "" {
		u += "&id=" + id
	}
	if hdr == nil {
		hdr = http.Header{}
	}
	if n.AccessToken != "" {
		hdr.Set("Authorization", "Bearer "+n.AccessToken)
	}
	ws, resp, err := websocket.Dial(context.Background(), u, &websocket.DialOptions{HTTPHeader: hdr})
	if err == nil {
		ws.CloseNow()
		return http.StatusSwitchingProtocols
	}
	if resp == nil {
		t.Fatal(err)
	}
	return resp.StatusCode
}

// Item 1: a hub that is not served gets 404 everywhere, and asking for
// thousands of them leaves nothing behind.
func TestUnknownHubIs404(t *testing.T) {
	t.Parallel()
	h := startHub(t, anonCfg())
	for i := range 200 {
		if code, _, body := do(t, "POST", fmt.Sprintf("%s?hub=h%d", h.NegotiateURL(), i), "", nil, nil); code != 404 {
			t.Fatalf("app negotiate of hub h%d: %d %s", i, code, body)
		}
	}
	n := clientToken(t, h, "nothere", "u", time.Hour)
	negURL := strings.Replace(n.URL, "/client/?", "/client/negotiate?", 1) + "&negotiateVersion=1"
	if code, _, body := do(t, "POST", negURL, n.AccessToken, nil, nil); code != 404 {
		t.Errorf("client negotiate: %d %s", code, body)
	}
	if got := dialStatus(t, n, "", nil); got != 404 {
		t.Errorf("connect: %d", got)
	}
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/api/hubs/nothere/:send?api-version=2022-06-01", `{"target":"x"}`},
		{"POST", "/api/v1/hubs/nothere", `{"target":"x"}`},
		{"PUT", "/api/hubs/nothere/users/u/groups/g?api-version=2022-06-01", ""},
		{"PUT", "/api/v1/hubs/nothere/groups/g/users/u", ""},
		{"POST", "/api/hubs/nothere/:generateToken?api-version=2023-07-01", ""},
	} {
		if code, hdr, body := h.restCall(t, c.method, c.path, c.body); code != 404 || hdr.Get("x-ms-error-code") == "" {
			t.Errorf("%s %s: %d %s", c.method, c.path, code, body)
		}
	}
	if st := h.reg.stats(); st.Memberships != 0 || st.Groups != 0 || st.Users != 0 || len(h.reg.hubs) != len(testHubs) {
		t.Fatalf("state left behind: %+v, %d hubs", st, len(h.reg.hubs))
	}
}

// Item 1: anonymous memberships expire once their (random) user is not
// connected, and the sweep frees every map they made; a connected
// anonymous user keeps its groups as long as it stays.
func TestAnonymousMembershipsAreSwept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRegistry([]string{"h"}, limits{maxConns: 10, maxPerUser: 10, maxGroupsPerUser: 100})
		ctx, cancel := context.WithCancel(context.Background())
		swept := make(chan struct{})
		go func() { defer close(swept); sweepLoop(ctx, r, time.Second) }()
		defer func() { cancel(); <-swept }()

		for i := range 1000 {
			for _, g := range []string{"all", "lobby"} {
				r.addUserToGroup("h", g, fmt.Sprintf("anonymous-%d", i), time.Minute, true, time.Now())
			}
		}
		// An authenticated user's membership without TTL stays.
		r.addUserToGroup("h", "all", "alice", 0, false, time.Now())
		stay := &conn{id: "c0", token: "t0", hub: "h", user: "anonymous-0"}
		if r.open(stay) != nil || !r.add(stay) {
			t.Fatal("add refused")
		}
		if st := r.stats(); st.Memberships != 2001 || st.Expiring != 2000 {
			t.Fatalf("before: %+v", st)
		}

		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if st := r.stats(); st.Memberships != 3 || st.Expiring != 2 {
			t.Fatalf("after the TTL: %+v, want anonymous-0's two and alice's", st)
		}
		if !r.userInGroup("h", "lobby", "anonymous-0", time.Now()) || r.count("h", scope{kind: scopeGroup, name: "lobby"}, time.Now()) != 1 {
			t.Fatal("the connected anonymous user lost its group")
		}

		r.closed(stay)
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		st := r.stats()
		if st.Memberships != 1 || st.Expiring != 0 || st.Groups != 1 || st.Users != 1 {
			t.Fatalf("after the last connection left: %+v, want only alice in all", st)
		}
	})
}

// Item 1: negotiated connections that never connect are swept too (not by
// the next negotiate: adding one is O(1)).
func TestPendingConnectionsAreSwept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRegistry([]string{"h"}, limits{maxConns: 10, maxPerUser: 10, maxGroupsPerUser: 100})
		r.lim.maxConns = 101
		for i := range 100 {
			if err := r.addPending(fmt.Sprint(i), pendingConn{id: fmt.Sprint(i), hub: "h", expires: time.Now().Add(15 * time.Second)}); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(10 * time.Second)
		if err := r.addPending("late", pendingConn{id: "late", hub: "h", expires: time.Now().Add(15 * time.Second)}); err != nil {
			t.Fatal(err)
		}
		// They are bounded like connections.
		if err := r.addPending("one too many", pendingConn{hub: "h", expires: time.Now().Add(15 * time.Second)}); !errors.Is(err, errTooManyConns) {
			t.Fatalf("pending over the bound: %v", err)
		}
		if _, err := r.takePending("7", "h", "", time.Now()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(6 * time.Second)
		if st := r.stats(); st.Pending != 100 {
			t.Fatalf("pending %d before the sweep, want 100 (adding does not sweep)", st.Pending)
		}
		r.sweep(time.Now())
		if st := r.stats(); st.Pending != 1 || len(r.pendingQ)-r.pendingH != 1 {
			t.Fatalf("after the sweep: %+v, queue %d", st, len(r.pendingQ)-r.pendingH)
		}
		if _, err := r.takePending("late", "h", "", time.Now()); err != nil {
			t.Fatal(err)
		}
	})
}

// Item 1: the same end to end: anonymous negotiates with groups on a
// running hub leave no state once the TTL has passed.
func TestAnonymousNegotiateStateIsFreed(t *testing.T) {
	t.Parallel()
	cfg := anonCfg()
	cfg.Negotiate.Groups = []string{"everyone", "lobby"}
	cfg.Negotiate.AnonymousGroupTTL = time.Second
	h := startHub(t, cfg, withSweepEvery(50*time.Millisecond))
	for range 50 {
		h.appNegotiate(t, "chat", "")
	}
	c := h.connect(t, "chat", "")
	if st := h.reg.stats(); st.Memberships != 102 {
		t.Fatalf("after 51 negotiates: %+v", st)
	}
	testkit.Eventually(t, 10*time.Second, "anonymous memberships to expire", func() string {
		if st := h.reg.stats(); st.Memberships != 2 || st.Pending != 0 {
			return fmt.Sprintf("%+v", st)
		}
		return ""
	})
	// The connected one kept its groups.
	code, _, _ := h.restCall(t, "POST", "/api/hubs/chat/groups/lobby/:send?api-version=2022-06-01", `{"target":"still"}`)
	if code != 202 {
		t.Fatal(code)
	}
	if got, _ := invocation(t, c.nextNonPing(5*time.Second)); got != "still" {
		t.Fatalf("got %s", got)
	}
}

// Item 1: a user belongs to at most Limits.MaxGroupsPerUser groups; a new
// one drops the membership updated longest ago, as Azure does.
func TestGroupsPerUserAreCapped(t *testing.T) {
	t.Parallel()
	cfg := anonCfg()
	cfg.Limits.MaxGroupsPerUser = 3
	h := startHub(t, cfg)
	put := func(g string) {
		t.Helper()
		if code, _, body := h.restCall(t, "PUT", "/api/hubs/chat/users/u/groups/"+g+"?api-version=2022-06-01", ""); code != 200 {
			t.Fatalf("add to %s: %d %s", g, code, body)
		}
	}
	in := func(g string) bool {
		code, _, _ := h.restCall(t, "HEAD", "/api/hubs/chat/users/u/groups/"+g+"?api-version=2022-06-01", "")
		return code == 200
	}
	put("g1")
	put("g2")
	put("g3")
	put("g1") // renewed: g2 is now the oldest
	put("g4")
	for g, want := range map[string]bool{"g1": true, "g2": false, "g3": true, "g4": true} {
		if in(g) != want {
			t.Errorf("u in %s: %v, want %v", g, !want, want)
		}
	}
	if st := h.reg.stats(); st.Memberships != 3 {
		t.Fatalf("%+v", st)
	}
}

// Item 6: connections are bounded per user and in all; over a limit the
// client negotiate answers 429 and the upgrade 503.
func TestConnectionLimits(t *testing.T) {
	t.Parallel()
	cfg := anonCfg()
	cfg.Limits.MaxConnectionsPerUser = 2
	cfg.Limits.MaxConnections = 3
	h := startHub(t, cfg)
	u := clientToken(t, h, "chat", "u", time.Hour)
	negotiations := make([]clientNegotiation, 3)
	for i := range negotiations {
		negotiations[i] = clientNegotiate(t, u) // nothing open yet
	}
	a := dial(t, u, negotiations[0])
	dial(t, u, negotiations[1])
	if got := dialStatus(t, u, negotiations[2].ConnectionToken, nil); got != 503 {
		t.Fatalf("third connection of u: %d, want 503", got)
	}
	if got := dialStatus(t, u, "", nil); got != 503 {
		t.Fatalf("third connection of u without negotiate: %d, want 503", got)
	}
	negURL := strings.Replace(u.URL, "/client/?", "/client/negotiate?", 1) + "&negotiateVersion=1"
	if code, _, body := do(t, "POST", negURL, u.AccessToken, nil, nil); code != 429 {
		t.Fatalf("client negotiate over the user limit: %d %s", code, body)
	}
	v := clientToken(t, h, "chat", "v", time.Hour)
	dial(t, v, clientNegotiate(t, v))
	// The hub is full: another user is refused too, at both negotiates.
	w := clientToken(t, h, "orders", "w", time.Hour)
	if code, _, _ := do(t, "POST", strings.Replace(w.URL, "/client/?", "/client/negotiate?", 1), w.AccessToken, nil, nil); code != 429 {
		t.Fatalf("client negotiate on a full hub: %d", code)
	}
	if code, _, _ := do(t, "POST", h.NegotiateURL()+"?hub=chat", "", nil, nil); code != 429 {
		t.Fatalf("app negotiate on a full hub: %d", code)
	}
	if got := dialStatus(t, w, "", nil); got != 503 {
		t.Fatalf("upgrade on a full hub: %d", got)
	}
	// A connection that leaves frees its place.
	a.ws.Close(websocket.StatusNormalClosure, "")
	testkit.Until(t, 5*time.Second, "u's first connection to be gone", func() bool { return h.reg.stats().Conns == 2 })
	dial(t, u, clientNegotiate(t, u))
}

// Item 6: idle keep-alive connections and requests that trickle in are
// closed; they do not pile up.
func TestIdleAndSlowConnectionsAreClosed(t *testing.T) {
	t.Parallel()
	h := startHub(t, anonCfg(), WithIdleTimeout(200*time.Millisecond), WithReadTimeout(300*time.Millisecond))
	closed := func(c net.Conn) error {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return errors.New("still open after 10 s")
		}
		return nil
	}
	// A keep-alive connection after one request.
	idle, err := net.Dial("tcp", h.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if _, err := io.WriteString(idle, "GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil || resp.StatusCode != 200 || resp.Close {
		t.Fatalf("health: %v %v", resp, err)
	}
	resp.Body.Close()
	if err := closed(idle); err != nil {
		t.Errorf("idle keep-alive connection: %v", err)
	}
	// A request whose body never comes.
	slow, err := net.Dial("tcp", h.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := io.WriteString(slow, "PUT /api/hubs/chat/users/u/groups/g HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	if err := closed(slow); err != nil {
		t.Errorf("request with a missing body: %v", err)
	}
}
