package worker

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/internal/connect"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/history"
	"github.com/changecast/changecast/publish/hub"
	"github.com/changecast/changecast/publish/snapshot"
	"github.com/changecast/changecast/schema/config"
)

// mountEndpoints serves, next to negotiate, GET {negotiate.path}/changes
// from the history (when there is one) and GET {negotiate.path}/snapshot
// for the mappings that enable snapshots (when the source can read them).
func mountEndpoints(cfg *config.Config, mappings []publish.Mapping, neg *hub.Negotiator, src changefeed.Snapshotter,
	hist history.Store, reg prometheus.Registerer, log *slog.Logger) error {
	if hist != nil {
		hubs := map[string]string{}
		for _, m := range mappings {
			hubs[strings.ToLower(m.Hub)] = m.Hub
		}
		neg.Handle("GET /changes", &history.Handler{Store: hist, Auth: neg, Hubs: hubs, Logger: log.With("part", "changes")})
	}
	if src == nil {
		return nil
	}
	routes, err := publish.CompileRoutes(mappings)
	if err != nil {
		return fatal(err)
	}
	var enabled []publish.Route
	for i, rt := range routes {
		if cfg.Mappings[i].Snapshots() {
			enabled = append(enabled, rt)
		}
	}
	if len(enabled) == 0 {
		return nil
	}
	var streams snapshot.Streams
	if hist != nil {
		streams = hist
	}
	h, err := snapshot.NewHandler(snapshot.Config{Routes: enabled, Source: src, Auth: neg, Streams: streams,
		Logger: log.With("part", "snapshot"), Metrics: snapshot.NewMetrics(reg)})
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	neg.Handle("GET /snapshot", h)
	return nil
}

// openHistory opens history.store: nil when off; close releases it.
func openHistory(cfg *config.Config) (history.Store, func(), error) {
	h := cfg.History
	lim := history.Limits{MaxMessages: h.MaxMessages, MaxAge: h.MaxAge.D(), MaxBytes: h.MaxBytes}
	switch h.Store {
	case "memory":
		return history.NewMemory(lim), func() {}, nil
	case "redis":
		c, err := connect.Redis(h.Redis.URL)
		if err != nil {
			return nil, nil, fatal(fmt.Errorf("history.redis.url: %w", err))
		}
		return history.NewRedis(c, h.Redis.Prefix, lim), func() { c.Close() }, nil
	}
	return nil, func() {}, nil
}
