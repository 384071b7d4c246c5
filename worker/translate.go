package worker

import (
	"fmt"
	"time"

	"github.com/changecast/changecast/changefeed/postgres"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/hub"
	"github.com/changecast/changecast/schema/config"
	"github.com/changecast/changecast/schema/template"
)

// The config file is translated into the option structs of the library
// packages here, and only here.

// Mappings are the file's mappings as the publish package takes them.
func Mappings(cfg *config.Config) []publish.Mapping {
	out := make([]publish.Mapping, len(cfg.Mappings))
	for i, m := range cfg.Mappings {
		out[i] = publish.Mapping{Collection: m.Collection, Hub: m.Hub, Group: m.Group, User: m.User, Method: m.Method,
			Key: m.Key, Include: m.Include, Exclude: m.Exclude}
	}
	return out
}

// changeHeadroom is room for the envelope around the largest single change
// of a batch.
const changeHeadroom = 4096

// MapperOptions are the mapper's limits from publish.*.
func MapperOptions(cfg *config.Config) publish.MapperOptions {
	return publish.MapperOptions{ShadowSize: cfg.Publish.ShadowSize, MaxChangeBytes: cfg.Publish.Batch.MaxBytes - changeHeadroom}
}

// PipelineConfig is each stream's pipeline from publish.*; source labels
// its envelopes.
func PipelineConfig(cfg *config.Config, source string) publish.PipelineConfig {
	b := cfg.Publish.Batch
	var linger time.Duration
	if b.MaxDelay != nil {
		linger = b.MaxDelay.D()
	}
	return publish.PipelineConfig{
		Source:      source,
		Batch:       publish.BatchLimits{MaxChanges: b.MaxChanges, MaxBytes: b.MaxBytes, MaxDelay: linger},
		Parallelism: cfg.Publish.Parallelism,
	}
}

// PostgresConfig builds the source's Config from the file's source section
// and its mappings (their key pointers override a table's primary key).
func PostgresConfig(pg *config.PostgresSource, mappings []config.Mapping) (postgres.Config, error) {
	c := postgres.Config{URL: pg.URL, Slot: pg.Slot, Publication: pg.Publication, Tables: pg.Tables,
		StatusInterval: pg.StatusInterval.D(), Heartbeat: pg.Heartbeat.D(), Keys: map[string][]string{},
		ReplicaIdentity: pg.ReplicaIdentity, OnSlotLost: pg.OnSlotLost, WALWarnFraction: pg.WALWarnFraction}
	for i, m := range mappings {
		if len(m.Key) == 0 {
			continue
		}
		var cols []string
		for j, k := range m.Key {
			p, err := template.ParsePointer(k)
			if err != nil || len(p) != 1 {
				return c, fmt.Errorf("mappings[%d].key[%d]: %q must name a column, e.g. /id", i, j, k)
			}
			cols = append(cols, p[0])
		}
		c.Keys[m.Collection] = cols
	}
	return c, nil
}

// HubConfig translates the config file's hub section into the options of
// publish/hub. Defaults and checks are the config's (ApplyDefaults, which
// also takes hub.hubs from the mappings when empty, and Validate); a field
// left empty keeps meaning hub's default.
func HubConfig(h config.Hub) hub.Config {
	n := h.Negotiate
	l := h.Limits
	c := hub.Config{
		Listen:    h.Listen,
		PublicURL: h.PublicURL,
		AccessKey: h.AccessKey,
		Hubs:      h.Hubs,
		Negotiate: hub.NegotiateConfig{
			Path:              n.Path,
			Hub:               n.Hub,
			Auth:              hub.NegotiateAuth{Anonymous: n.Auth.Anonymous},
			UserClaim:         n.UserClaim,
			Groups:            n.Groups,
			GroupTTL:          n.GroupTTL.D(),
			AnonymousGroupTTL: n.AnonymousGroupTTL.D(),
			TokenTTL:          n.TokenTTL.D(),
		},
		CORSOrigins: h.CORS.Origins,
		Limits: hub.Limits{
			MaxConnections:        l.MaxConnections,
			MaxConnectionsPerUser: l.MaxConnectionsPerUser,
			MaxGroupsPerUser:      l.MaxGroupsPerUser,
			MaxClientTokenTTL:     l.MaxClientTokenTTL.D(),
			MaxRESTTokenTTL:       l.MaxRESTTokenTTL.D(),
		},
		Static:     h.Static,
		Transports: h.Transports,
		StatefulReconnect: hub.StatefulReconnect{
			Disabled:    h.StatefulReconnect.Disabled,
			BufferBytes: h.StatefulReconnect.BufferBytes,
			Window:      h.StatefulReconnect.Window.D(),
		},
	}
	if b := h.Backplane; b != nil && b.Redis != nil {
		c.Backplane = &hub.Backplane{RedisURL: b.Redis.URL, Prefix: b.Redis.Prefix, NodeTTL: b.Redis.NodeTTL.D()}
	}
	if j := n.Auth.JWT; j != nil {
		c.Negotiate.Auth.JWT = &hub.JWTAuth{
			HS256Secret: j.HS256Secret,
			JWKSFile:    j.JWKSFile,
			JWKSURL:     j.JWKSURL,
			Authority:   j.Authority,
			Issuer:      j.Issuer,
			Audience:    j.Audience,
		}
	}
	if s := n.Auth.AppService; s != nil {
		c.Negotiate.Auth.AppService = &hub.AppServiceAuth{TrustedProxies: s.TrustedProxies, UserClaim: s.UserClaim}
	}
	if x := n.Auth.Proxy; x != nil {
		c.Negotiate.Auth.Proxy = &hub.ProxyAuth{TrustedProxies: x.TrustedProxies}
	}
	if w := n.Auth.Webhook; w != nil {
		c.Negotiate.Auth.Webhook = &hub.WebhookAuth{URL: w.URL, Timeout: w.Timeout.D(), Headers: w.Headers, CacheTTL: w.CacheTTL.D()}
	}
	return c
}
