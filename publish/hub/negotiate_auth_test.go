package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// fakeService stands in for Azure SignalR behind a stand-alone Negotiator.
type fakeService struct {
	mu    sync.Mutex
	joins []string // hub/group/user/ttl
}

func (f *fakeService) AddUserToGroup(_ context.Context, hub, group, user string, ttl time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.joins = append(f.joins, hub+"/"+group+"/"+user+"/"+ttl.String())
	return nil
}

func (f *fakeService) ClientURL(hub string) string { return "https://svc.example/client/?hub=" + hub }

func (f *fakeService) ClientToken(_ context.Context, hub, user string, _ time.Duration) (string, error) {
	return "token-for-" + user, nil
}

func payrollCfg() Config {
	cfg := jwtCfg()
	cfg.Hubs = []string{"orders", "payroll"}
	cfg.Negotiate.Hub = "orders"
	return cfg
}

// Item 3: with negotiate.hub set, a valid token gets no client token for
// another hub, served or not; without it, the served hubs apply.
func TestNegotiateHubIsEnforced(t *testing.T) {
	t.Parallel()
	tok := appToken(t, jwt.MapClaims{"sub": "alice", "tid": "a"})
	h := startHub(t, payrollCfg())
	n, err := NewNegotiator(payrollCfg(), &fakeService{}, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	alone := httptest.NewServer(n.Handler())
	defer alone.Close()
	for _, base := range []string{h.NegotiateURL(), alone.URL + "/api/negotiate"} {
		for query, want := range map[string]int{
			"?hub=payroll": 403,
			"?hub=nothere": 403,
			"?hub=orders":  200,
			"?hub=ORDERS":  200,
			"":             200, // negotiate.hub is the default
		} {
			if code, _, body := do(t, "POST", base+query, tok, nil, nil); code != want {
				t.Errorf("%s%s: %d %s, want %d", base, query, code, body, want)
			}
		}
	}
	open := jwtCfg()
	open.Hubs = []string{"orders", "payroll"}
	h2 := startHub(t, open)
	for query, want := range map[string]int{"?hub=payroll": 200, "?hub=nothere": 404, "": 400, "?hub=orders&hub=payroll": 400} {
		if code, _, body := do(t, "POST", h2.NegotiateURL()+query, tok, nil, nil); code != want {
			t.Errorf("no negotiate.hub, %s: %d %s, want %d", query, code, body, want)
		}
	}
}

// Authorize applies negotiate's rules and says which status to answer.
func TestAuthorize(t *testing.T) {
	t.Parallel()
	svc := &fakeService{}
	n, err := NewNegotiator(payrollCfg(), svc, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	req := func(token string) *http.Request {
		r := httptest.NewRequest("GET", "/api/snapshot", nil)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		return r
	}
	good := appToken(t, jwt.MapClaims{"sub": "alice", "tid": "t1"})
	for _, tc := range []struct {
		name, hub, token string
		status           int
	}{
		{"bad hub name", "1x", good, 400},
		{"hub not allowed", "payroll", good, 403},
		{"no token", "orders", "", 401},
		{"bad token", "orders", "not.a.jwt", 401},
		{"no user claim", "orders", appToken(t, jwt.MapClaims{"tid": "t1"}), 401},
		{"path in user id", "orders", appToken(t, jwt.MapClaims{"sub": ":evil/groups/admins?x="}), 400},
		{"fragment in user id", "orders", appToken(t, jwt.MapClaims{"sub": "a#b"}), 400},
		{"control in user id", "orders", appToken(t, jwt.MapClaims{"sub": "a\x01b"}), 400},
		{"dot-dot user id", "orders", appToken(t, jwt.MapClaims{"sub": ".."}), 400},
	} {
		_, err := n.Authorize(req(tc.token), tc.hub)
		var ae *AuthError
		if StatusOf(err) != tc.status || !errors.As(err, &ae) {
			t.Errorf("%s: %v (status %d), want %d", tc.name, err, StatusOf(err), tc.status)
			continue
		}
		if tc.status == 401 && ae.Msg != "invalid token" {
			t.Errorf("%s: message %q says more than invalid token", tc.name, ae.Msg)
		}
	}
	c, err := n.Authorize(req(good), "")
	if err != nil || !reflect.DeepEqual(c, Caller{Hub: "orders", User: "alice", Groups: []string{"tenant-t1", "everyone"}}) {
		t.Fatalf("caller %+v %v", c, err)
	}
	if StatusOf(nil) != 200 || StatusOf(errors.New("x")) != 500 {
		t.Fatal("StatusOf")
	}
	// Authorize only reads: nothing joined, nothing counted.
	if len(svc.joins) != 0 {
		t.Fatalf("joins %v", svc.joins)
	}
	// Anonymous callers get a user id of their own each time.
	anon := anonCfg()
	anon.Negotiate.Groups = []string{"lobby", "t-{claims.tid}"}
	na, err := NewNegotiator(anon, svc, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	c1, err1 := na.Authorize(req(""), "chat")
	c2, err2 := na.Authorize(req(""), "chat")
	if err1 != nil || err2 != nil || !c1.Anonymous || !strings.HasPrefix(c1.User, "anonymous-") || c1.User == c2.User ||
		!reflect.DeepEqual(c1.Groups, []string{"lobby"}) {
		t.Fatalf("anonymous: %+v %v, %+v %v", c1, err1, c2, err2)
	}
	if _, err := na.Authorize(req(""), "nothere"); StatusOf(err) != 404 {
		t.Fatalf("unknown hub: %v", err)
	}
}

// Handle mounts endpoints next to negotiate, with the same CORS, on the
// Server and on a stand-alone Negotiator's Handler.
func TestHandleMountsNextToNegotiate(t *testing.T) {
	t.Parallel()
	snapshot := func(n *Negotiator) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := n.Authorize(r, r.URL.Query().Get("hub"))
			if err != nil {
				n.Refuse(w, err)
				return
			}
			writeJSON(w, 200, c)
		})
	}
	s, err := New(jwtCfg(), WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	s.Negotiator().Handle("GET /snapshot", snapshot(s.Negotiator()))
	s.cfg.Listen = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	<-s.Listening()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}()
	alone, err := NewNegotiator(jwtCfg(), &fakeService{}, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	alone.Handle("GET /snapshot", snapshot(alone))
	srv := httptest.NewServer(alone.Handler())
	defer srv.Close()

	tok := appToken(t, jwt.MapClaims{"sub": "bob", "tid": "b"})
	for _, base := range []string{s.Endpoint(), srv.URL} {
		code, hdr, body := do(t, "GET", base+"/api/snapshot?hub=chat", tok, nil, map[string]string{"Origin": "http://localhost:3000"})
		var c Caller
		if code != 200 || json.Unmarshal(body, &c) != nil || c.User != "bob" || c.Hub != "chat" ||
			hdr.Get("Access-Control-Allow-Origin") != "http://localhost:3000" {
			t.Errorf("%s: %d %s %v", base, code, body, hdr)
		}
		if code, _, _ := do(t, "GET", base+"/api/snapshot?hub=nothere", tok, nil, nil); code != 404 {
			t.Errorf("%s unknown hub: %d", base, code)
		}
		if code, hdr, body := do(t, "GET", base+"/api/snapshot?hub=chat", "", nil, nil); code != 401 || hdr.Get("WWW-Authenticate") == "" ||
			!strings.Contains(string(body), `"message":"invalid token"`) {
			t.Errorf("%s no token: %d %s", base, code, body)
		}
		// Negotiate still answers next to it.
		if code, _, _ := do(t, "POST", base+"/api/negotiate?hub=chat", tok, nil, nil); code != 200 {
			t.Errorf("%s negotiate: %d", base, code)
		}
	}
}

// Item 11: refused negotiates answer "invalid token" without the reason,
// and are logged at most once a second per reason.
func TestRefusedNegotiatesAreLoggedOncePerSecond(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var logs bytes.Buffer
		log := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
		n, err := NewNegotiator(jwtCfg(), &fakeService{}, WithLogger(log))
		if err != nil {
			t.Fatal(err)
		}
		refuse := func(token, hub string) *httptest.ResponseRecorder {
			r := httptest.NewRequest("POST", "/api/negotiate?hub="+hub, nil)
			r.Header.Set("Authorization", "Bearer "+token)
			w := httptest.NewRecorder()
			n.Handler().ServeHTTP(w, r)
			return w
		}
		count := func(code string) (n int, lines []map[string]any) {
			mu.Lock()
			defer mu.Unlock()
			for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
				var m map[string]any
				if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "hub: negotiate refused" && m["code"] == code {
					n++
					lines = append(lines, m)
				}
			}
			return n, lines
		}
		for range 100 {
			w := refuse("not.a.jwt", "chat")
			if w.Code != 401 || !strings.Contains(w.Body.String(), `"message":"invalid token"`) || strings.Contains(w.Body.String(), "segment") {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			refuse("not.a.jwt", "nothere")
		}
		if got, _ := count("Error.Unauthorized"); got != 1 {
			t.Fatalf("%d log lines for 100 refusals within a second", got)
		}
		if got, _ := count("Error.Hub.NotExisted"); got != 1 {
			t.Fatalf("%d log lines for another reason", got)
		}
		time.Sleep(time.Second)
		refuse("not.a.jwt", "chat")
		got, lines := count("Error.Unauthorized")
		if got != 2 || lines[1]["suppressed"] != float64(99) {
			t.Fatalf("after a second: %d lines %v", got, lines)
		}
		mu.Lock()
		defer mu.Unlock()
		if !strings.Contains(logs.String(), "token is malformed") {
			t.Fatalf("the reason is not at debug level: %s", logs.String())
		}
	})
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
