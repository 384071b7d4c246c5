package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

const hubBase = `
source: {postgres: {url: u, tables: [public.t]}}
mappings:
  - {collection: public.t, hub: orders}
  - {collection: public.t, hub: Orders, group: "g-{/x}"}
  - {collection: public.t, hub: audit}
publish: {target: hub}
`

// The served hubs default to the mappings' hubs, each once.
func TestHubDefaults(t *testing.T) {
	c, err := Parse([]byte(hubBase+"hub: {negotiate: {auth: {anonymous: true}}}"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	h := c.Hub
	if !reflect.DeepEqual(h.Hubs, []string{"orders", "audit"}) {
		t.Errorf("hubs %v", h.Hubs)
	}
	if h.Limits != (HubLimits{MaxConnections: 100_000, MaxConnectionsPerUser: 100, MaxReadsPerCaller: 8, MaxGroupsPerUser: 100,
		MaxClientTokenTTL: Duration(24 * time.Hour), MaxRESTTokenTTL: Duration(time.Hour)}) ||
		h.Negotiate.AnonymousGroupTTL != Duration(5*time.Minute) {
		t.Errorf("defaults %+v %v", h.Limits, h.Negotiate.AnonymousGroupTTL)
	}
	if !reflect.DeepEqual(h.Transports, []string{"WebSockets", "ServerSentEvents", "LongPolling"}) ||
		h.StatefulReconnect != (HubStatefulReconnect{BufferBytes: 100_000, Window: Duration(30 * time.Second)}) || h.Backplane != nil {
		t.Errorf("defaults %v %+v %v", h.Transports, h.StatefulReconnect, h.Backplane)
	}
	c, err = Parse([]byte(hubBase+"hub: {accessKey: \"0123456789abcdef0123456789abcdef\", backplane: {redis: {url: \"redis://r:6379\"}}, negotiate: {auth: {anonymous: true}}}"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Hub.Backplane.Redis; r.Prefix != "changecast:hub" || r.NodeTTL != Duration(15*time.Second) {
		t.Errorf("backplane defaults %+v", r)
	}
}

// Every hub problem names its field (exit 2 in `config validate`).
func TestHubChecksNameTheField(t *testing.T) {
	for _, tc := range []struct {
		name, hub string
		fields    []string
	}{
		{"jwks file without iss and aud", `{negotiate: {auth: {jwt: {jwksFile: keys.json}}}}`,
			[]string{"hub.negotiate.auth.jwt.issuer", "hub.negotiate.auth.jwt.audience"}},
		{"jwks url over http", `{negotiate: {auth: {jwt: {jwksURL: "http://idp.example/keys", issuer: i, audience: a}}}}`,
			[]string{"hub.negotiate.auth.jwt.jwksURL"}},
		{"authority over http", `{negotiate: {auth: {jwt: {authority: "http://login.example/tenant/v2.0"}}}}`,
			[]string{"hub.negotiate.auth.jwt.authority", "hub.negotiate.auth.jwt.audience"}},
		{"app service without trusted proxies", `{negotiate: {auth: {appService: {userClaim: oid}}}}`,
			[]string{"hub.negotiate.auth.appService.trustedProxies"}},
		{"app service bad cidr", `{negotiate: {auth: {appService: {trustedProxies: [10.0.0.0/8, 10.0.0.0/40]}}}}`,
			[]string{"hub.negotiate.auth.appService.trustedProxies[1]"}},
		{"proxy bad cidr", `{negotiate: {auth: {proxy: {trustedProxies: [proxy.local]}}}}`,
			[]string{"hub.negotiate.auth.proxy.trustedProxies[0]"}},
		{"webhook without url", `{negotiate: {auth: {webhook: {timeout: 2s}}}}`, []string{"hub.negotiate.auth.webhook.url"}},
		{"webhook fields", `{negotiate: {auth: {webhook: {url: "ftp://app", timeout: -1s, cacheTTL: -1s, headers: ["X Y"]}}}}`,
			[]string{"hub.negotiate.auth.webhook.url", "hub.negotiate.auth.webhook.timeout", "hub.negotiate.auth.webhook.cacheTTL", "hub.negotiate.auth.webhook.headers[0]"}},
		{"short key", `{accessKey: abc, negotiate: {auth: {anonymous: true}}}`, []string{"hub.accessKey"}},
		{"no reads", `{limits: {maxReadsPerCaller: -1}, negotiate: {auth: {anonymous: true}}}`, []string{"hub.limits.maxReadsPerCaller"}},
		{"hubs without a mapping's hub", `{hubs: [orders], negotiate: {auth: {anonymous: true}}}`, []string{"mappings[2].hub"}},
		{"bad hub", `{hubs: [orders, audit, "9x"], negotiate: {auth: {anonymous: true}}}`, []string{"hub.hubs[2]"}},
		{"negotiate hub not served", `{negotiate: {hub: payroll, auth: {anonymous: true}}}`, []string{"hub.negotiate.hub"}},
		{"public url", `{publicURL: "https://hub.example/path", negotiate: {auth: {anonymous: true}}}`, []string{"hub.publicURL"}},
		{"peers", `{peers: ["http://10.0.0.2:8080", "10.0.0.3:8080", "http://w3/api"], peerTimeout: -1s, negotiate: {auth: {anonymous: true}}}`,
			[]string{"hub.peers[1]", "hub.peers[2]", "hub.peerTimeout"}},
		{"limits", `{limits: {maxConnections: -1, maxGroupsPerUser: -2}, negotiate: {auth: {anonymous: true}}}`,
			[]string{"hub.limits.maxConnections", "hub.limits.maxGroupsPerUser"}},
		{"token TTL over the cap", `{negotiate: {tokenTTL: 48h, auth: {anonymous: true}}}`, []string{"hub.negotiate.tokenTTL"}},
		{"transports", `{transports: [WebSockets, Smoke], negotiate: {auth: {anonymous: true}}}`, []string{"hub.transports[1]"}},
		{"stateful reconnect", `{statefulReconnect: {bufferBytes: -1, window: 10ms}, negotiate: {auth: {anonymous: true}}}`,
			[]string{"hub.statefulReconnect.bufferBytes", "hub.statefulReconnect.window"}},
		{"backplane without redis", `{backplane: {}, negotiate: {auth: {anonymous: true}}}`, []string{"hub.backplane.redis", "hub.accessKey"}},
		{"backplane redis url", `{backplane: {redis: {url: "http://r"}}, negotiate: {auth: {anonymous: true}}}`, []string{"hub.backplane.redis.url"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(hubBase+"hub: "+tc.hub), env(nil))
			for _, f := range tc.fields {
				if !hasField(err, f) {
					t.Errorf("%v does not name %s", err, f)
				}
			}
		})
	}
	// The app negotiate for Azure SignalR is checked alike.
	_, err := Parse([]byte(strings.Replace(hubBase, "target: hub", "target: signalr, signalr: {connectionString: x}", 1)+
		"hub: {negotiate: {auth: {jwt: {jwksURL: \"https://idp.example/keys\"}}}}"), env(nil))
	if !hasField(err, "hub.negotiate.auth.jwt.issuer") {
		t.Errorf("signalr target: %v", err)
	}
	// Also when only an identity provider other than jwt is set.
	for auth, field := range map[string]string{
		"{webhook: {timeout: 1s}}":          "hub.negotiate.auth.webhook.url",
		"{appService: {userClaim: oid}}":    "hub.negotiate.auth.appService.trustedProxies",
		"{proxy: {trustedProxies: [nope]}}": "hub.negotiate.auth.proxy.trustedProxies[0]",
	} {
		_, err := Parse([]byte(strings.Replace(hubBase, "target: hub", "target: signalr, signalr: {connectionString: x}", 1)+
			"hub: {negotiate: {auth: "+auth+"}}"), env(nil))
		if !hasField(err, field) {
			t.Errorf("signalr target, %s: %v", auth, err)
		}
	}
	// A good section passes.
	if _, err := Parse([]byte(hubBase+`hub: {publicURL: "https://hub.example", accessKey: "0123456789abcdef0123456789abcdef",
  negotiate: {hub: audit, auth: {jwt: {jwksURL: "https://idp.example/keys", issuer: i, audience: a}}}}`), env(nil)); err != nil {
		t.Errorf("good section: %v", err)
	}
}

func hasField(err error, path string) bool {
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		return false
	}
	for _, e := range joined.Unwrap() {
		var fe *FieldError
		if errors.As(e, &fe) && fe.Path == path {
			return true
		}
	}
	return false
}
