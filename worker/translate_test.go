package worker

import (
	"reflect"
	"testing"
	"time"

	"github.com/changecast/changecast/publish/hub"
	"github.com/changecast/changecast/schema/config"
)

func TestHubConfigCopiesEveryField(t *testing.T) {
	in := config.Hub{
		Listen:    "127.0.0.1:9",
		PublicURL: "https://hub.example",
		AccessKey: "k",
		Hubs:      []string{"h", "i"},
		Negotiate: config.HubNegotiate{
			Path: "/p", Hub: "h", UserClaim: "oid", Groups: []string{"g", "t-{claims.tid}"},
			Auth: config.NegotiateAuth{Anonymous: true, JWT: &config.JWTAuth{
				HS256Secret: "s", JWKSFile: "f", JWKSURL: "u", Authority: "o", Issuer: "i", Audience: "a"},
				AppService: &config.AppServiceAuth{TrustedProxies: []string{"10.0.0.0/8"}, UserClaim: "oid"},
				Proxy:      &config.ProxyAuth{TrustedProxies: []string{"127.0.0.1"}},
				Webhook: &config.WebhookAuth{URL: "http://app/auth", Timeout: config.Duration(time.Second),
					Headers: []string{"Cookie"}, CacheTTL: config.Duration(time.Minute)}},
			GroupTTL: config.Duration(time.Minute), AnonymousGroupTTL: config.Duration(time.Second), TokenTTL: config.Duration(2 * time.Hour),
		},
		CORS: config.HubCORS{Origins: []string{"*"}},
		Limits: config.HubLimits{MaxConnections: 1, MaxConnectionsPerUser: 2, MaxGroupsPerUser: 3,
			MaxClientTokenTTL: config.Duration(4 * time.Hour), MaxRESTTokenTTL: config.Duration(5 * time.Minute)},
		Static:            "web",
		Transports:        []string{"LongPolling"},
		StatefulReconnect: config.HubStatefulReconnect{Disabled: true, BufferBytes: 7, Window: config.Duration(time.Minute)},
		Backplane:         &config.HubBackplane{Redis: &config.HubRedis{URL: "redis://r:6379/2", Prefix: "p", NodeTTL: config.Duration(9 * time.Second)}},
	}
	want := hub.Config{
		Listen:    "127.0.0.1:9",
		PublicURL: "https://hub.example",
		AccessKey: "k",
		Hubs:      []string{"h", "i"},
		Negotiate: hub.NegotiateConfig{
			Path: "/p", Hub: "h", UserClaim: "oid", Groups: []string{"g", "t-{claims.tid}"},
			Auth: hub.NegotiateAuth{Anonymous: true, JWT: &hub.JWTAuth{
				HS256Secret: "s", JWKSFile: "f", JWKSURL: "u", Authority: "o", Issuer: "i", Audience: "a"},
				AppService: &hub.AppServiceAuth{TrustedProxies: []string{"10.0.0.0/8"}, UserClaim: "oid"},
				Proxy:      &hub.ProxyAuth{TrustedProxies: []string{"127.0.0.1"}},
				Webhook: &hub.WebhookAuth{URL: "http://app/auth", Timeout: time.Second,
					Headers: []string{"Cookie"}, CacheTTL: time.Minute}},
			GroupTTL: time.Minute, AnonymousGroupTTL: time.Second, TokenTTL: 2 * time.Hour,
		},
		CORSOrigins: []string{"*"},
		Limits: hub.Limits{MaxConnections: 1, MaxConnectionsPerUser: 2, MaxGroupsPerUser: 3,
			MaxClientTokenTTL: 4 * time.Hour, MaxRESTTokenTTL: 5 * time.Minute},
		Static:            "web",
		Transports:        []string{"LongPolling"},
		StatefulReconnect: hub.StatefulReconnect{Disabled: true, BufferBytes: 7, Window: time.Minute},
		Backplane:         &hub.Backplane{RedisURL: "redis://r:6379/2", Prefix: "p", NodeTTL: 9 * time.Second},
	}
	if got := HubConfig(in); !reflect.DeepEqual(got, want) {
		t.Fatalf("HubConfig:\n got %+v\nwant %+v", got, want)
	}
}

// The config file and publish/hub check a hub section alike, so a file
// that validates never fails in hub.New.
func TestHubConfigValidatesAlike(t *testing.T) {
	anon := config.NegotiateAuth{Anonymous: true}
	hs := []string{"orders"}
	jwks := func(j config.JWTAuth) config.Hub {
		return config.Hub{Hubs: hs, Negotiate: config.HubNegotiate{Auth: config.NegotiateAuth{JWT: &j}}}
	}
	for name, h := range map[string]config.Hub{
		"anonymous":             {Hubs: hs, Negotiate: config.HubNegotiate{Auth: anon}},
		"no auth":               {Hubs: hs},
		"no hubs":               {Negotiate: config.HubNegotiate{Auth: anon}},
		"bad hub in hubs":       {Hubs: []string{"9x"}, Negotiate: config.HubNegotiate{Auth: anon}},
		"path":                  {Hubs: hs, Negotiate: config.HubNegotiate{Auth: anon, Path: "api"}},
		"hub name":              {Hubs: hs, Negotiate: config.HubNegotiate{Auth: anon, Hub: "9x"}},
		"hub not served":        {Hubs: hs, Negotiate: config.HubNegotiate{Auth: anon, Hub: "payroll"}},
		"hub served":            {Hubs: hs, Negotiate: config.HubNegotiate{Auth: anon, Hub: "ORDERS"}},
		"two jwt keys":          jwks(config.JWTAuth{HS256Secret: "0123456789abcdef", JWKSURL: "https://x", Issuer: "i", Audience: "a"}),
		"short secret":          jwks(config.JWTAuth{HS256Secret: "short"}),
		"jwks url":              jwks(config.JWTAuth{JWKSURL: "ftp://x", Issuer: "i", Audience: "a"}),
		"jwks url http":         jwks(config.JWTAuth{JWKSURL: "http://idp.example/keys", Issuer: "i", Audience: "a"}),
		"jwks url loopback":     jwks(config.JWTAuth{JWKSURL: "http://127.0.0.1:9/keys", Issuer: "i", Audience: "a"}),
		"jwks no issuer":        jwks(config.JWTAuth{JWKSURL: "https://idp.example/keys", Audience: "a"}),
		"jwks file no aud":      jwks(config.JWTAuth{JWKSFile: "keys.json", Issuer: "i"}),
		"bad template":          {Hubs: hs, Negotiate: config.HubNegotiate{Auth: anon, Groups: []string{"t-{tid}"}}},
		"negative groupTTL":     {Hubs: hs, Negotiate: config.HubNegotiate{Auth: anon, GroupTTL: -1}},
		"short tokenTTL":        {Hubs: hs, Negotiate: config.HubNegotiate{Auth: anon, TokenTTL: config.Duration(time.Second)}},
		"tokenTTL over cap":     {Hubs: hs, Negotiate: config.HubNegotiate{Auth: anon, TokenTTL: config.Duration(48 * time.Hour)}},
		"short anonymous TTL":   {Hubs: hs, Negotiate: config.HubNegotiate{Auth: anon, AnonymousGroupTTL: config.Duration(time.Millisecond)}},
		"origin":                {Hubs: hs, Negotiate: config.HubNegotiate{Auth: anon}, CORS: config.HubCORS{Origins: []string{"localhost"}}},
		"good origins":          {Hubs: hs, Negotiate: config.HubNegotiate{Auth: anon}, CORS: config.HubCORS{Origins: []string{"*", "http://localhost:3000"}}},
		"short key":             {Hubs: hs, Negotiate: config.HubNegotiate{Auth: anon}, AccessKey: "abc"},
		"key with ;":            {Hubs: hs, Negotiate: config.HubNegotiate{Auth: anon}, AccessKey: "0123456789abcdef0123456789abcdef;x"},
		"good key":              {Hubs: hs, Negotiate: config.HubNegotiate{Auth: anon}, AccessKey: "0123456789abcdef0123456789abcdef"},
		"public url":            {Hubs: hs, Negotiate: config.HubNegotiate{Auth: anon}, PublicURL: "https://hub.example:8443"},
		"public url with path":  {Hubs: hs, Negotiate: config.HubNegotiate{Auth: anon}, PublicURL: "https://hub.example/x"},
		"negative limit":        {Hubs: hs, Negotiate: config.HubNegotiate{Auth: anon}, Limits: config.HubLimits{MaxConnections: -1}},
		"short REST TTL cap":    {Hubs: hs, Negotiate: config.HubNegotiate{Auth: anon}, Limits: config.HubLimits{MaxRESTTokenTTL: config.Duration(time.Second)}},
		"bad transport":         {Hubs: hs, Negotiate: config.HubNegotiate{Auth: anon}, Transports: []string{"Carrier Pigeon"}},
		"transport twice":       {Hubs: hs, Negotiate: config.HubNegotiate{Auth: anon}, Transports: []string{"LongPolling", "LongPolling"}},
		"short window":          {Hubs: hs, Negotiate: config.HubNegotiate{Auth: anon}, StatefulReconnect: config.HubStatefulReconnect{Window: config.Duration(time.Millisecond)}},
		"redis url":             {Hubs: hs, Negotiate: config.HubNegotiate{Auth: anon}, Backplane: &config.HubBackplane{Redis: &config.HubRedis{URL: "http://r"}}},
		"backplane without key": {Hubs: hs, Negotiate: config.HubNegotiate{Auth: anon}, Backplane: &config.HubBackplane{Redis: &config.HubRedis{URL: "redis://r:6379"}}},
		"good redis":            {Hubs: hs, AccessKey: "0123456789abcdef0123456789abcdef", Negotiate: config.HubNegotiate{Auth: anon}, Backplane: &config.HubBackplane{Redis: &config.HubRedis{URL: "redis://r:6379"}}},
		"authority":             jwks(config.JWTAuth{Authority: "https://login.example/t/v2.0", Audience: "a"}),
		"authority http":        jwks(config.JWTAuth{Authority: "http://login.example/t/v2.0", Audience: "a"}),
		"authority loopback":    jwks(config.JWTAuth{Authority: "http://localhost:9", Audience: "a"}),
		"authority no aud":      jwks(config.JWTAuth{Authority: "https://login.example/t/v2.0"}),
		"authority and jwks":    jwks(config.JWTAuth{Authority: "https://login.example", JWKSURL: "https://x", Audience: "a"}),
		"app service":           {Hubs: hs, Negotiate: config.HubNegotiate{Auth: config.NegotiateAuth{AppService: &config.AppServiceAuth{TrustedProxies: []string{"10.0.0.0/8", "::1"}}}}},
		"app service no cidrs":  {Hubs: hs, Negotiate: config.HubNegotiate{Auth: config.NegotiateAuth{AppService: &config.AppServiceAuth{}}}},
		"app service bad cidr":  {Hubs: hs, Negotiate: config.HubNegotiate{Auth: config.NegotiateAuth{AppService: &config.AppServiceAuth{TrustedProxies: []string{"10.0.0.0/33"}}}}},
		"proxy bad cidr":        {Hubs: hs, Negotiate: config.HubNegotiate{Auth: config.NegotiateAuth{Proxy: &config.ProxyAuth{TrustedProxies: []string{"somewhere"}}}}},
		"webhook":               {Hubs: hs, Negotiate: config.HubNegotiate{Auth: config.NegotiateAuth{Webhook: &config.WebhookAuth{URL: "http://app:8080/auth"}}}},
		"webhook no url":        {Hubs: hs, Negotiate: config.HubNegotiate{Auth: config.NegotiateAuth{Webhook: &config.WebhookAuth{}}}},
		"webhook bad header":    {Hubs: hs, Negotiate: config.HubNegotiate{Auth: config.NegotiateAuth{Webhook: &config.WebhookAuth{URL: "https://app/auth", Headers: []string{"X: y"}}}}},
		"webhook negative":      {Hubs: hs, Negotiate: config.HubNegotiate{Auth: config.NegotiateAuth{Webhook: &config.WebhookAuth{URL: "https://app/auth", Timeout: -1}}}},
		"short node TTL":        {Hubs: hs, AccessKey: "0123456789abcdef0123456789abcdef", Negotiate: config.HubNegotiate{Auth: anon}, Backplane: &config.HubBackplane{Redis: &config.HubRedis{URL: "redis://r:6379", NodeTTL: config.Duration(time.Second)}}},
	} {
		h.ApplyDefaults()
		cerr, herr := h.Validate(), HubConfig(h).Validate()
		if (cerr == nil) != (herr == nil) {
			t.Errorf("%s: config says %v, hub says %v", name, cerr, herr)
		}
	}
}
