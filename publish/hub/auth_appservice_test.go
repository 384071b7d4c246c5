package hub

import (
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// principal encodes an X-MS-CLIENT-PRINCIPAL as the platform does.
func principal(t *testing.T, claims ...[2]string) string {
	t.Helper()
	type claim struct {
		Typ string `json:"typ"`
		Val string `json:"val"`
	}
	p := struct {
		AuthTyp string  `json:"auth_typ"`
		NameTyp string  `json:"name_typ"`
		RoleTyp string  `json:"role_typ"`
		Claims  []claim `json:"claims"`
	}{AuthTyp: "aad", NameTyp: "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
		RoleTyp: "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"}
	for _, c := range claims {
		p.Claims = append(p.Claims, claim{c[0], c[1]})
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// headerNegotiator serves a Negotiator with auth and groups over the
// headers' claims.
func headerNegotiator(t *testing.T, auth NegotiateAuth) (string, *fakeService) {
	t.Helper()
	return serveNegotiator(t, auth, []string{"tenant-{claims.http://schemas.microsoft.com/identity/claims/tenantid}",
		"role-{claims.roles}", "idp-{claims.idp}", "team-{claims.groups}"})
}

func snapshotCaller(t *testing.T, base string, hdr map[string]string) (int, Caller) {
	t.Helper()
	code, _, body := do(t, "GET", base+"/api/snapshot?hub=chat", "", nil, hdr)
	var c Caller
	_ = json.Unmarshal(body, &c)
	return code, c
}

// Issue 17, items 1 and 5: App Service / Container Apps headers from a
// trusted address give the user and its groups, at negotiate and at the
// endpoints that share its authorization; from an untrusted address they
// are ignored.
func TestAppServiceHeaders(t *testing.T) {
	t.Parallel()
	hdr := map[string]string{
		"X-MS-CLIENT-PRINCIPAL": principal(t,
			[2]string{"http://schemas.microsoft.com/identity/claims/tenantid", "t1"},
			[2]string{"http://schemas.microsoft.com/ws/2008/06/identity/claims/role", "admin"},
			[2]string{"http://schemas.microsoft.com/ws/2008/06/identity/claims/role", "reader"},
			[2]string{"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name", "Alice"},
			[2]string{"oid", "0000-aaaa"}),
		"X-MS-CLIENT-PRINCIPAL-ID":   "user-1",
		"X-MS-CLIENT-PRINCIPAL-NAME": "alice@example.com",
		"X-MS-CLIENT-PRINCIPAL-IDP":  "aad",
	}
	wantGroups := []string{"tenant-t1", "role-admin", "role-reader", "idp-aad"}

	trusted, svc := headerNegotiator(t, NegotiateAuth{AppService: &AppServiceAuth{TrustedProxies: []string{"127.0.0.0/8", "::1"}}})
	if code, user := negotiateStatus(t, trusted, "", hdr); code != 200 || user != "user-1" {
		t.Fatalf("trusted negotiate: %d %q", code, user)
	}
	svc.mu.Lock()
	joins := slices.Clone(svc.joins)
	svc.mu.Unlock()
	if want := []string{"chat/tenant-t1/user-1/0s", "chat/role-admin/user-1/0s", "chat/role-reader/user-1/0s", "chat/idp-aad/user-1/0s"}; !reflect.DeepEqual(joins, want) {
		t.Fatalf("joins %v, want %v", joins, want)
	}
	if code, c := snapshotCaller(t, trusted, hdr); code != 200 || c.User != "user-1" || !reflect.DeepEqual(c.Groups, wantGroups) {
		t.Fatalf("trusted snapshot: %d %+v", code, c)
	}
	// No headers at all, or a principal that does not parse: 401, never 500.
	if code, _ := negotiateStatus(t, trusted, "", nil); code != 401 {
		t.Errorf("no headers: %d", code)
	}
	for name, p := range map[string]string{
		"not base64":        "%%%",
		"not JSON":          base64.StdEncoding.EncodeToString([]byte("{")),
		"claims not array":  base64.StdEncoding.EncodeToString([]byte(`{"claims":{"typ":"a"}}`)),
		"claim without typ": base64.StdEncoding.EncodeToString([]byte(`{"claims":[{"val":"a"}]}`)),
	} {
		bad := map[string]string{"X-MS-CLIENT-PRINCIPAL": p, "X-MS-CLIENT-PRINCIPAL-ID": "user-1"}
		if code, _ := negotiateStatus(t, trusted, "", bad); code != 401 {
			t.Errorf("%s: %d, want 401", name, code)
		}
	}
	// A principal without the id header: the user is unknown.
	if code, _ := negotiateStatus(t, trusted, "", map[string]string{"X-MS-CLIENT-PRINCIPAL": hdr["X-MS-CLIENT-PRINCIPAL"]}); code != 401 {
		t.Errorf("no principal id: %d", code)
	}

	// The same headers from an address outside trustedProxies mean nothing.
	untrusted, svc2 := headerNegotiator(t, NegotiateAuth{AppService: &AppServiceAuth{TrustedProxies: []string{"10.0.0.0/8"}}})
	if code, _ := negotiateStatus(t, untrusted, "", hdr); code != 401 {
		t.Errorf("untrusted negotiate: %d, want 401", code)
	}
	if code, _ := snapshotCaller(t, untrusted, hdr); code != 401 {
		t.Errorf("untrusted snapshot: %d, want 401", code)
	}
	svc2.mu.Lock()
	if len(svc2.joins) != 0 {
		t.Errorf("untrusted joins %v", svc2.joins)
	}
	svc2.mu.Unlock()
	// With anonymous allowed, the untrusted caller is just anonymous.
	anon, _ := headerNegotiator(t, NegotiateAuth{Anonymous: true, AppService: &AppServiceAuth{TrustedProxies: []string{"10.0.0.0/8"}}})
	if code, c := snapshotCaller(t, anon, hdr); code != 200 || !c.Anonymous || c.User == "user-1" || len(c.Groups) != 0 {
		t.Errorf("untrusted with anonymous: %d %+v", code, c)
	}

	// userClaim takes the id from the principal instead.
	byOID, _ := headerNegotiator(t, NegotiateAuth{AppService: &AppServiceAuth{TrustedProxies: []string{"127.0.0.1/32"}, UserClaim: "oid"}})
	if code, user := negotiateStatus(t, byOID, "", hdr); code != 200 || user != "0000-aaaa" {
		t.Errorf("userClaim oid: %d %q", code, user)
	}
}

// Issue 17, item 1: oauth2-proxy's headers, from trusted addresses only.
func TestProxyHeaders(t *testing.T) {
	t.Parallel()
	hdr := map[string]string{"X-Forwarded-User": "bob", "X-Forwarded-Email": "bob@example.com", "X-Forwarded-Groups": "ops, dev"}
	trusted, _ := headerNegotiator(t, NegotiateAuth{Proxy: &ProxyAuth{TrustedProxies: []string{"127.0.0.1"}}})
	if code, c := snapshotCaller(t, trusted, hdr); code != 200 || c.User != "bob" || !reflect.DeepEqual(c.Groups, []string{"team-ops", "team-dev"}) {
		t.Errorf("trusted: %d %+v", code, c)
	}
	untrusted, _ := headerNegotiator(t, NegotiateAuth{Proxy: &ProxyAuth{TrustedProxies: []string{"192.168.0.0/16"}}})
	if code, _ := snapshotCaller(t, untrusted, hdr); code != 401 {
		t.Errorf("untrusted: %d, want 401", code)
	}
}

func TestParseClientPrincipal(t *testing.T) {
	got, err := parseClientPrincipal(principal(t, [2]string{"a", "1"}, [2]string{"a", "2"}, [2]string{"a", "3"},
		[2]string{"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name", "N"}))
	want := map[string]any{"a": []any{"1", "2", "3"}, "idp": "aad", "name": "N", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name": "N"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("%v %v", got, err)
	}
}

func FuzzParseClientPrincipal(f *testing.F) {
	f.Add(base64.StdEncoding.EncodeToString([]byte(`{"auth_typ":"aad","claims":[{"typ":"a","val":"b"},{"typ":"a","val":"c"}]}`)))
	f.Add("e30")
	f.Fuzz(func(t *testing.T, s string) {
		claims, err := parseClientPrincipal(s)
		if err == nil && claims == nil {
			t.Fatal("nil claims without error")
		}
	})
}

// A refusal of headers from an untrusted address says so in its reason
// (the debug log), which is how a wrong trustedProxies shows.
func TestUntrustedHeadersAreNamedInTheReason(t *testing.T) {
	t.Parallel()
	cfg := Config{Hubs: testHubs, Negotiate: NegotiateConfig{Auth: NegotiateAuth{AppService: &AppServiceAuth{TrustedProxies: []string{"10.0.0.0/8"}}}}}
	n, err := NewNegotiator(cfg, &fakeService{}, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("POST", "/api/negotiate", nil) // from 192.0.2.1
	r.Header.Set("X-MS-CLIENT-PRINCIPAL-ID", "user-1")
	_, err = n.Authorize(r, "chat")
	if StatusOf(err) != 401 || !strings.Contains(err.Error(), "from 192.0.2.1:1234 ignored: not in appService.trustedProxies") {
		t.Fatalf("%v", err)
	}
	r.RemoteAddr = "10.1.2.3:5555"
	if c, err := n.Authorize(r, "chat"); err != nil || c.User != "user-1" {
		t.Fatalf("from 10.1.2.3: %+v %v", c, err)
	}
}
