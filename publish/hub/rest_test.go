package hub

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/changecast/changecast/publish/signalr"
)

// restCall signs a call like the Azure SDKs do and returns status, headers
// and body.
func (h *testHub) restCall(t *testing.T, method, path, body string) (int, http.Header, []byte) {
	t.Helper()
	u := h.Endpoint() + path
	tok, err := signalr.SignAccessToken(h.AccessKey(), strings.SplitN(u, "?", 2)[0], "", time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var hdr map[string]string
	if body != "" {
		hdr = map[string]string{"Content-Type": "application/json"}
	}
	return do(t, method, u, tok, []byte(body), hdr)
}

func TestRESTRoutes(t *testing.T) {
	t.Parallel()
	h := startHub(t, anonCfg())
	a := h.connect(t, "chat", "")
	b := h.connect(t, "Chat", "")
	call := func(method, path, body string, want int) []byte {
		t.Helper()
		code, hdr, resp := h.restCall(t, method, path, body)
		if code != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, code, resp, want)
		}
		if code == 404 && hdr.Get("x-ms-error-code") == "" {
			t.Fatalf("%s %s: 404 without x-ms-error-code", method, path)
		}
		return resp
	}
	expect := func(c *wsClient, target string) {
		t.Helper()
		if got, _ := invocation(t, c.nextNonPing(5*time.Second)); got != target {
			t.Fatalf("got %s, want %s", got, target)
		}
	}

	// v1 and 2022-06-01 sends; hub names in any case; .NET's PascalCase keys.
	call("POST", "/api/v1/hubs/CHAT", `{"Target":"v1all","Arguments":[1]}`, 202)
	expect(a, "v1all")
	expect(b, "v1all")
	call("POST", "/api/hubs/chat/:send?api-version=2022-06-01&excluded="+b.id, `{"target":"notb","arguments":[]}`, 202)
	expect(a, "notb")
	call("POST", "/api/hubs/chat/connections/"+b.id+"/:send?api-version=2022-06-01", `{"target":"tob"}`, 202)
	call("POST", "/api/v1/hubs/chat/connections/"+b.id, `{"target":"tob1"}`, 202)
	expect(b, "tob") // b did not get "notb": it came first otherwise
	expect(b, "tob1")

	// Connection groups: add, check, send, remove.
	call("PUT", "/api/hubs/chat/groups/g1/connections/"+a.id+"?api-version=2022-06-01", "", 200)
	call("PUT", "/api/v1/hubs/chat/groups/g1/connections/nope", "", 404)
	call("HEAD", "/api/hubs/chat/groups/g1?api-version=2022-06-01", "", 200)
	call("GET", "/api/v1/hubs/chat/groups/g1", "", 200)
	call("HEAD", "/api/hubs/chat/groups/g2?api-version=2022-06-01", "", 404)
	call("POST", "/api/hubs/chat/groups/g1/:send?api-version=2022-06-01", `{"target":"g1"}`, 202)
	call("POST", "/api/v1/hubs/chat/groups/g1", `{"target":"g1v1"}`, 202)
	expect(a, "g1")
	expect(a, "g1v1")
	var list struct{ Value []connInfo }
	_ = json.Unmarshal(call("GET", "/api/hubs/chat/groups/g1/connections?api-version=2024-12-01", "", 200), &list)
	if len(list.Value) != 1 || list.Value[0].ConnectionID != a.id {
		t.Fatalf("list %+v", list)
	}
	call("DELETE", "/api/hubs/chat/groups/g1/connections/"+a.id+"?api-version=2022-06-01", "", 200)
	call("HEAD", "/api/hubs/chat/groups/g1?api-version=2022-06-01", "", 404)
	call("DELETE", "/api/hubs/chat/connections/"+a.id+"/groups?api-version=2022-06-01", "", 200)

	// User groups persist without connections and across them.
	call("PUT", "/api/hubs/chat/users/u1/groups/team?api-version=2022-06-01", "", 200)
	call("HEAD", "/api/hubs/chat/users/u1/groups/team?api-version=2022-06-01", "", 200)
	call("GET", "/api/v1/hubs/chat/groups/team/users/u1", "", 200)
	call("HEAD", "/api/hubs/chat/users/u1?api-version=2022-06-01", "", 404) // no connection yet
	call("PUT", "/api/v1/hubs/chat/groups/team/users/u2?ttl=1", "", 202)
	call("DELETE", "/api/hubs/chat/users/u1/groups/team?api-version=2022-06-01", "", 204)
	call("HEAD", "/api/hubs/chat/users/u1/groups/team?api-version=2022-06-01", "", 404)
	call("PUT", "/api/hubs/chat/users/u1/groups/team?api-version=2022-06-01", "", 200)
	call("DELETE", "/api/v1/hubs/chat/users/u1/groups", "", 202)
	call("HEAD", "/api/hubs/chat/users/u1/groups/team?api-version=2022-06-01", "", 404)
	call("HEAD", "/api/hubs/chat/users/u2/groups/team?api-version=2022-06-01", "", 200) // until its ttl: TestUserGroupTTL

	// generateToken mints a token the client endpoints accept.
	var gt struct{ Token string }
	_ = json.Unmarshal(call("POST", "/api/hubs/chat/:generateToken?api-version=2023-07-01&userId=zed&minutesToExpire=5", "", 200), &gt)
	c := dial(t, negotiated{URL: h.Endpoint() + "/client/?hub=chat", AccessToken: gt.Token}, clientNegotiate(t, negotiated{URL: h.Endpoint() + "/client/?hub=chat", AccessToken: gt.Token}))
	call("HEAD", "/api/hubs/chat/users/zed?api-version=2022-06-01", "", 200)
	call("POST", "/api/hubs/chat/users/zed/:send?api-version=2022-06-01", `{"target":"zed"}`, 202)
	call("POST", "/api/v1/hubs/chat/users/zed", `{"target":"zed1"}`, 202)
	expect(c, "zed")
	expect(c, "zed1")

	// Bad input.
	call("POST", "/api/hubs/chat/:send?api-version=2022-06-01", `{"arguments":[]}`, 400)
	call("POST", "/api/hubs/chat/:send?api-version=2022-06-01", `[1`, 400)
	call("POST", "/api/hubs/1chat/:send?api-version=2022-06-01", `{"target":"x"}`, 400)
	call("PUT", "/api/hubs/chat/users/u/groups/%20%20?api-version=2022-06-01", "", 400)
	code, _, _ := do(t, "POST", h.Endpoint()+"/api/hubs/chat/:send?api-version=2022-06-01", "", []byte(`{"target":"x"}`), map[string]string{"Content-Type": "application/x-msgpack"})
	if code != 401 { // auth comes first
		t.Fatalf("unauthenticated msgpack: %d", code)
	}
	big := `{"target":"x","arguments":["` + strings.Repeat("y", 1<<20) + `"]}`
	call("POST", "/api/hubs/chat/:send?api-version=2022-06-01", big, 413)
	call("HEAD", "/api/hubs/chat/connections/nope?api-version=2022-06-01", "", 404)
	call("DELETE", "/api/hubs/chat/connections/nope?api-version=2022-06-01", "", 404)
	call("HEAD", "/api/v1/health", "", 200)
	call("HEAD", "/api/health?api-version=2022-06-01", "", 200)

	// Close: the client gets a Close allowing reconnect, with the reason.
	call("DELETE", "/api/hubs/chat/connections/"+b.id+"?api-version=2022-06-01&reason=bye", "", 200)
	if got := string(b.nextNonPing(5 * time.Second)); got != `{"type":7,"error":"bye","allowReconnect":true}` {
		t.Fatalf("close: %s", got)
	}
	call("POST", "/api/hubs/chat/:closeConnections?api-version=2022-06-01&allowReconnect=false&excluded="+c.id, "", 204)
	if got := string(a.nextNonPing(5 * time.Second)); got != `{"type":7}` {
		t.Fatalf("close all: %s", got)
	}
}

// TestUserGroupTTL: a user's group membership added with ttl (seconds)
// holds until then and not after; one without ttl does not expire. The hub
// runs in a synctest bubble, so the clock is the bubble's and the checks
// happen at exact instants.
func TestUserGroupTTL(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := newInProcess(t, anonCfg())
		expect := func(method, target string, want int) {
			t.Helper()
			if got := h.rest(method, target); got != want {
				t.Fatalf("%s %s: %d, want %d", method, target, got, want)
			}
		}
		expect("PUT", "/api/v1/hubs/chat/groups/team/users/u2?ttl=1", 202)
		expect("PUT", "/api/hubs/chat/users/u3/groups/team?api-version=2022-06-01&ttl=2", 200)
		expect("PUT", "/api/hubs/chat/users/u1/groups/team?api-version=2022-06-01", 200)
		time.Sleep(time.Second)
		expect("HEAD", "/api/hubs/chat/users/u2/groups/team?api-version=2022-06-01", 200) // at its ttl: still in
		expect("GET", "/api/v1/hubs/chat/groups/team/users/u2", 200)
		time.Sleep(time.Millisecond)
		expect("HEAD", "/api/hubs/chat/users/u2/groups/team?api-version=2022-06-01", 404)
		expect("GET", "/api/v1/hubs/chat/groups/team/users/u2", 404)
		expect("HEAD", "/api/hubs/chat/users/u3/groups/team?api-version=2022-06-01", 200)
		// Adding again renews the membership.
		expect("PUT", "/api/hubs/chat/users/u3/groups/team?api-version=2022-06-01&ttl=2", 200)
		time.Sleep(1500 * time.Millisecond)
		expect("HEAD", "/api/hubs/chat/users/u3/groups/team?api-version=2022-06-01", 200)
		time.Sleep(time.Second)
		expect("HEAD", "/api/hubs/chat/users/u3/groups/team?api-version=2022-06-01", 404)
		time.Sleep(24 * time.Hour)
		expect("HEAD", "/api/hubs/chat/users/u1/groups/team?api-version=2022-06-01", 200)
	})
}

func TestRESTAuth(t *testing.T) {
	t.Parallel()
	h := startHub(t, anonCfg())
	path := "/api/hubs/chat/:send?api-version=2022-06-01"
	body := []byte(`{"target":"x"}`)
	host := strings.TrimPrefix(h.Endpoint(), "http://")
	port := host[strings.LastIndexByte(host, ':'):]
	sign := func(key, aud string, ttl time.Duration) string {
		tok, _ := signalr.SignAccessToken(key, aud, "", ttl, time.Now())
		return tok
	}
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"docs form", sign(h.AccessKey(), h.Endpoint()+"/api/hubs/chat/:send", time.Minute), 202},
		// The .NET SDK: no port, query included.
		{".NET SDK form", sign(h.AccessKey(), "http://127.0.0.1/api/hubs/chat/:send?api-version=2022-06-01", time.Minute), 202},
		{"trailing slash", sign(h.AccessKey(), h.Endpoint()+"/api/hubs/chat/:send/", time.Minute), 202},
		{"other path", sign(h.AccessKey(), h.Endpoint()+"/api/hubs/other/:send", time.Minute), 401},
		{"other host", sign(h.AccessKey(), "http://example.com"+port+"/api/hubs/chat/:send", time.Minute), 401},
		{"https", sign(h.AccessKey(), "https://127.0.0.1"+port+"/api/hubs/chat/:send", time.Minute), 401},
		{"expired", sign(h.AccessKey(), h.Endpoint()+"/api/hubs/chat/:send", -time.Minute), 401},
		{"wrong key", sign("not-the-key", h.Endpoint()+"/api/hubs/chat/:send", time.Minute), 401},
		{"none", "", 401},
	} {
		code, _, resp := do(t, "POST", h.Endpoint()+path, tc.token, body, nil)
		if code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, resp, tc.want)
		}
	}
}
