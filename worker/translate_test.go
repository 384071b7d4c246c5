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
		AccessKey: "k",
		Negotiate: config.HubNegotiate{
			Path: "/p", Hub: "h", UserClaim: "oid", Groups: []string{"g", "t-{claims.tid}"},
			Auth: config.NegotiateAuth{Anonymous: true, JWT: &config.JWTAuth{
				HS256Secret: "s", JWKSFile: "f", JWKSURL: "u", Issuer: "i", Audience: "a"}},
			GroupTTL: config.Duration(time.Minute), TokenTTL: config.Duration(2 * time.Hour),
		},
		CORS:   config.HubCORS{Origins: []string{"*"}},
		Static: "web",
	}
	want := hub.Config{
		Listen:    "127.0.0.1:9",
		AccessKey: "k",
		Negotiate: hub.NegotiateConfig{
			Path: "/p", Hub: "h", UserClaim: "oid", Groups: []string{"g", "t-{claims.tid}"},
			Auth: hub.NegotiateAuth{Anonymous: true, JWT: &hub.JWTAuth{
				HS256Secret: "s", JWKSFile: "f", JWKSURL: "u", Issuer: "i", Audience: "a"}},
			GroupTTL: time.Minute, TokenTTL: 2 * time.Hour,
		},
		CORSOrigins: []string{"*"},
		Static:      "web",
	}
	if got := HubConfig(in); !reflect.DeepEqual(got, want) {
		t.Fatalf("HubConfig:\n got %+v\nwant %+v", got, want)
	}
}

// The config file and publish/hub check a hub section alike, so a file
// that validates never fails in hub.New.
func TestHubConfigValidatesAlike(t *testing.T) {
	anon := config.NegotiateAuth{Anonymous: true}
	for name, h := range map[string]config.Hub{
		"anonymous":         {Negotiate: config.HubNegotiate{Auth: anon}},
		"no auth":           {},
		"path":              {Negotiate: config.HubNegotiate{Auth: anon, Path: "api"}},
		"hub name":          {Negotiate: config.HubNegotiate{Auth: anon, Hub: "9x"}},
		"two jwt keys":      {Negotiate: config.HubNegotiate{Auth: config.NegotiateAuth{JWT: &config.JWTAuth{HS256Secret: "0123456789abcdef", JWKSURL: "https://x"}}}},
		"short secret":      {Negotiate: config.HubNegotiate{Auth: config.NegotiateAuth{JWT: &config.JWTAuth{HS256Secret: "short"}}}},
		"jwks url":          {Negotiate: config.HubNegotiate{Auth: config.NegotiateAuth{JWT: &config.JWTAuth{JWKSURL: "ftp://x"}}}},
		"bad template":      {Negotiate: config.HubNegotiate{Auth: anon, Groups: []string{"t-{tid}"}}},
		"negative groupTTL": {Negotiate: config.HubNegotiate{Auth: anon, GroupTTL: -1}},
		"short tokenTTL":    {Negotiate: config.HubNegotiate{Auth: anon, TokenTTL: config.Duration(time.Second)}},
		"origin":            {Negotiate: config.HubNegotiate{Auth: anon}, CORS: config.HubCORS{Origins: []string{"localhost"}}},
		"good origins":      {Negotiate: config.HubNegotiate{Auth: anon}, CORS: config.HubCORS{Origins: []string{"*", "http://localhost:3000"}}},
	} {
		h.ApplyDefaults()
		cerr, herr := h.Validate(), HubConfig(h).Validate()
		if (cerr == nil) != (herr == nil) {
			t.Errorf("%s: config says %v, hub says %v", name, cerr, herr)
		}
	}
}
