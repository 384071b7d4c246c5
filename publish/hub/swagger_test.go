package hub

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// TestRESTEveryRouteFollowsTheSwagger calls every route of the data-plane
// swagger (Azure/azure-signalr docs/swagger: v1.json, V20220601.json,
// v20241201.json) that the hub serves, with the status codes they declare:
// success, 404 where a connection, group or user is declared able to be
// missing, 400 for a bad or missing api-version (naming the supported
// ones), 401 without a token.
func TestRESTEveryRouteFollowsTheSwagger(t *testing.T) {
	t.Parallel()
	h := startHub(t, jwtCfg())
	c := h.connect(t, "chat", appToken(t, jwt.MapClaims{"sub": "zed", "tid": "z"}))
	const v2, v24 = "?api-version=2022-06-01", "?api-version=2024-12-01"
	send := `{"target":"x","arguments":[1]}`
	cid := c.id
	for _, tc := range []struct {
		method, path, body string
		want               int
	}{
		// v1.json
		{"HEAD", "/api/v1/health", "", 200},
		{"POST", "/api/v1/hubs/chat", send, 202},
		{"POST", "/api/v1/hubs/chat?excluded=" + cid + "&excluded=other", send, 202},
		{"POST", "/api/v1/hubs/chat/users/zed", send, 202},
		{"POST", "/api/v1/hubs/chat/connections/" + cid, send, 202},
		{"GET", "/api/v1/hubs/chat/connections/" + cid, "", 200},
		{"HEAD", "/api/v1/hubs/chat/connections/" + cid, "", 200},
		{"HEAD", "/api/v1/hubs/chat/connections/nope", "", 404},
		{"POST", "/api/v1/hubs/chat/groups/g", send, 202},
		{"PUT", "/api/v1/hubs/chat/groups/g/connections/" + cid, "", 200},
		{"PUT", "/api/v1/hubs/chat/groups/g/connections/nope", "", 404},
		{"GET", "/api/v1/hubs/chat/groups/g", "", 200},
		{"HEAD", "/api/v1/hubs/chat/groups/g", "", 200},
		{"HEAD", "/api/v1/hubs/chat/groups/empty", "", 404},
		{"GET", "/api/v1/hubs/chat/users/zed", "", 200},
		{"HEAD", "/api/v1/hubs/chat/users/nobody", "", 404},
		{"DELETE", "/api/v1/hubs/chat/groups/g/connections/" + cid, "", 200},
		{"DELETE", "/api/v1/hubs/chat/groups/g/connections/nope", "", 404},
		{"PUT", "/api/v1/hubs/chat/groups/vip/users/zed?ttl=60", "", 202},
		{"GET", "/api/v1/hubs/chat/groups/vip/users/zed", "", 200},
		{"HEAD", "/api/v1/hubs/chat/groups/vip/users/nobody", "", 404},
		{"DELETE", "/api/v1/hubs/chat/groups/vip/users/zed", "", 202},
		{"DELETE", "/api/v1/hubs/chat/users/zed/groups", "", 202},
		// V20220601.json (and the same routes in v20241201.json)
		{"HEAD", "/api/health" + v2, "", 200},
		{"POST", "/api/hubs/chat/:send" + v2 + "&excluded=" + cid, send, 202},
		{"POST", "/api/hubs/chat/users/zed/:send" + v2, send, 202},
		{"POST", "/api/hubs/chat/connections/" + cid + "/:send" + v2, send, 202},
		{"POST", "/api/hubs/chat/groups/g/:send" + v2 + "&excluded=x", send, 202},
		{"HEAD", "/api/hubs/chat/connections/" + cid + v2, "", 200},
		{"HEAD", "/api/hubs/chat/connections/nope" + v2, "", 404},
		{"PUT", "/api/hubs/chat/groups/g/connections/" + cid + v2, "", 200},
		{"PUT", "/api/hubs/chat/groups/g/connections/nope" + v2, "", 404},
		{"HEAD", "/api/hubs/chat/groups/g" + v2, "", 200},
		{"HEAD", "/api/hubs/chat/groups/empty" + v2, "", 404},
		{"GET", "/api/hubs/chat/groups/g/connections" + v24, "", 200},
		{"DELETE", "/api/hubs/chat/groups/g/connections/" + cid + v2, "", 200},
		{"DELETE", "/api/hubs/chat/groups/g/connections/nope" + v2, "", 404},
		{"DELETE", "/api/hubs/chat/connections/" + cid + "/groups" + v2, "", 200},
		{"HEAD", "/api/hubs/chat/users/zed" + v2, "", 200},
		{"HEAD", "/api/hubs/chat/users/nobody" + v2, "", 404},
		{"PUT", "/api/hubs/chat/users/zed/groups/vip" + v2 + "&ttl=60", "", 200},
		{"HEAD", "/api/hubs/chat/users/zed/groups/vip" + v2, "", 200},
		{"HEAD", "/api/hubs/chat/users/nobody/groups/vip" + v2, "", 404},
		{"DELETE", "/api/hubs/chat/users/zed/groups/vip" + v2, "", 204},
		{"DELETE", "/api/hubs/chat/users/zed/groups" + v2, "", 204},
		{"POST", "/api/hubs/chat/:generateToken" + v24 + "&userId=zed", "", 200},
		{"POST", "/api/hubs/chat/users/nobody/:closeConnections" + v2 + "&reason=r", "", 204},
		{"POST", "/api/hubs/chat/groups/empty/:closeConnections" + v2, "", 204},
		{"POST", "/api/hubs/other/:closeConnections" + v2, "", 204},
		{"DELETE", "/api/hubs/chat/connections/nope" + v2, "", 404},
		// api-version: required on every non-v1 route, and one of those
		// the swagger files and SDKs use.
		{"HEAD", "/api/health", "", 400},
		{"POST", "/api/hubs/chat/:send", send, 400},
		{"POST", "/api/hubs/chat/:send?api-version=2019-01-01", send, 400},
		{"HEAD", "/api/hubs/chat/users/zed?api-version=2022-06-01&api-version=2024-12-01", "", 400},
		{"GET", "/api/hubs/chat/groups/g/connections", "", 400},
		// Last: closing the connection, then it is gone.
		{"POST", "/api/hubs/chat/users/zed/:closeConnections" + v2 + "&excluded=" + cid, "", 204},
		{"HEAD", "/api/hubs/chat/connections/" + cid + v2, "", 200},
		{"DELETE", "/api/hubs/chat/connections/" + cid + v2 + "&reason=bye", "", 200},
	} {
		code, hdr, body := h.restCall(t, tc.method, tc.path, tc.body)
		if code != tc.want {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, code, body, tc.want)
			continue
		}
		if code == 404 && hdr.Get("x-ms-error-code") == "" && tc.method != "HEAD" {
			t.Errorf("%s %s: 404 without x-ms-error-code", tc.method, tc.path)
		}
		if code == 400 && strings.Contains(tc.path, "/api/hubs") && !strings.Contains(tc.path, "api-version=2022-06-01&") &&
			tc.method != "HEAD" && !strings.Contains(string(body), "2022-06-01, 2022-11-01, 2023-07-01, 2024-01-01, 2024-12-01") {
			t.Errorf("%s %s: 400 %s does not name the supported versions", tc.method, tc.path, body)
		}
	}
	// Without a token, every route is refused.
	if code, _, _ := do(t, "POST", h.Endpoint()+"/api/hubs/chat/:send"+v2, "", []byte(send), nil); code != 401 {
		t.Errorf("no token: %d", code)
	}
	if code, _, _ := do(t, "PUT", h.Endpoint()+"/api/v1/hubs/chat/groups/g/users/zed", "", nil, nil); code != 401 {
		t.Errorf("no token, v1: %d", code)
	}
	// The Close reached the client.
	for {
		rec := c.nextNonPing(5 * 1e9)
		if strings.Contains(string(rec), `"type":7`) {
			break
		}
	}
}

// The group listing of 2024-12-01 pages with maxpagesize, top and
// continuationToken; nextLink fetches the next page.
func TestListGroupPages(t *testing.T) {
	t.Parallel()
	h := startHub(t, anonCfg())
	want := map[string]bool{}
	for range 7 {
		c := h.connect(t, "chat", "")
		want[c.id] = true
		if code, _, b := h.restCall(t, "PUT", "/api/hubs/chat/groups/paged/connections/"+c.id+"?api-version=2024-12-01", ""); code != 200 {
			t.Fatalf("join: %d %s", code, b)
		}
	}
	type page struct {
		Value []struct {
			ConnectionID string `json:"connectionId"`
			UserID       string `json:"userId"`
		} `json:"value"`
		NextLink string `json:"nextLink"`
	}
	list := func(path string) (ids []string, pages int) {
		t.Helper()
		for path != "" {
			code, _, b := h.restCall(t, "GET", path, "")
			if code != 200 {
				t.Fatalf("GET %s: %d %s", path, code, b)
			}
			var p page
			if err := json.Unmarshal(b, &p); err != nil {
				t.Fatal(err)
			}
			if len(p.Value) > 3 {
				t.Fatalf("a page of %d, maxpagesize 3", len(p.Value))
			}
			for _, v := range p.Value {
				ids = append(ids, v.ConnectionID)
				if v.UserID == "" {
					t.Errorf("connection %s without its user", v.ConnectionID)
				}
			}
			pages++
			path = ""
			if p.NextLink != "" {
				u, err := url.Parse(p.NextLink)
				if err != nil || !strings.HasPrefix(p.NextLink, h.Endpoint()) {
					t.Fatalf("nextLink %q", p.NextLink)
				}
				path = u.RequestURI()
			}
		}
		return ids, pages
	}
	ids, pages := list("/api/hubs/chat/groups/paged/connections?api-version=2024-12-01&maxpagesize=3")
	if len(ids) != 7 || pages != 3 {
		t.Fatalf("%d ids in %d pages, want 7 in 3", len(ids), pages)
	}
	for i, id := range ids {
		if !want[id] || (i > 0 && ids[i-1] >= id) {
			t.Fatalf("listing %v: not the group's connections, each once, in order", ids)
		}
	}
	if ids, _ := list("/api/hubs/chat/groups/paged/connections?api-version=2024-12-01&maxpagesize=3&top=4"); len(ids) != 4 {
		t.Fatalf("top=4 gave %d", len(ids))
	}
	for _, q := range []string{"maxpagesize=0", "maxpagesize=201", "top=0", "continuationToken=garbage"} {
		if code, _, _ := h.restCall(t, "GET", "/api/hubs/chat/groups/paged/connections?api-version=2024-12-01&"+q, ""); code != 400 {
			t.Errorf("%s: %d, want 400", q, code)
		}
	}
	if code, _, b := h.restCall(t, "GET", "/api/hubs/chat/groups/nobody/connections?api-version=2024-12-01", ""); code != 200 || !strings.Contains(string(b), `"value":[]`) {
		t.Errorf("empty group: %d %s", code, b)
	}
}
