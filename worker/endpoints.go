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
	"github.com/changecast/changecast/publish/inflight"
	"github.com/changecast/changecast/publish/snapshot"
	"github.com/changecast/changecast/schema/config"
)

// mountEndpoints serves, next to negotiate, GET {negotiate.path}/changes
// from the history (when there is one) and GET {negotiate.path}/snapshot
// for the mappings that enable snapshots (when the source can read them;
// a worker that cannot read them now asks hub.peers).
// Call close once they are no longer served, before the source closes.
func mountEndpoints(cfg *config.Config, mappings []publish.Mapping, neg *hub.Negotiator, src changefeed.Snapshotter,
	hist history.Store, reg prometheus.Registerer, log *slog.Logger) (close func(), err error) {
	close = func() {}
	// One bound for a caller's snapshot and /changes reads together.
	reads := inflight.New(cfg.Hub.Limits.MaxReadsPerCaller)
	if hist != nil {
		hubs := map[string]string{}
		for _, m := range mappings {
			hubs[strings.ToLower(m.Hub)] = m.Hub
		}
		neg.Handle("GET /changes", &history.Handler{Store: hist, Auth: neg, Hubs: hubs, Reads: reads, Logger: log.With("part", "changes")})
	}
	if src == nil {
		return close, nil
	}
	routes, err := publish.CompileRoutes(mappings)
	if err != nil {
		return close, fatal(err)
	}
	var enabled []publish.Route
	for i, rt := range routes {
		if cfg.Mappings[i].Snapshots() {
			enabled = append(enabled, rt)
		}
	}
	if len(enabled) == 0 {
		return close, nil
	}
	var streams snapshot.Streams
	if hist != nil {
		streams = hist
	}
	var peers *snapshot.Peers
	if len(cfg.Hub.Peers) > 0 {
		// A standby answers too, by the streaming worker (docs/scale-out.md).
		peers = &snapshot.Peers{URLs: cfg.Hub.Peers, Timeout: cfg.Hub.PeerTimeout.D()}
	}
	h, err := snapshot.NewHandler(snapshot.Config{Routes: enabled, Source: src, Auth: neg, Streams: streams, Reads: reads, Peers: peers,
		Logger: log.With("part", "snapshot"), Metrics: snapshot.NewMetrics(reg)})
	if err != nil {
		return close, fmt.Errorf("snapshot: %w", err)
	}
	neg.Handle("GET /snapshot", h)
	return h.Close, nil
}

// openHistory opens history.store: nil when off; close releases it (and
// saves a memory store to history.file). Run calls close only after the
// pipeline stopped, so the file holds every envelope that was appended.
func openHistory(cfg *config.Config, log *slog.Logger) (history.Store, func(), error) {
	h := cfg.History
	lim := history.Limits{MaxMessages: h.MaxMessages, MaxAge: h.MaxAge.D(), MaxBytes: h.MaxBytes}
	switch h.Store {
	case "memory":
		m := history.NewMemory(lim)
		if h.File == "" {
			return m, func() {}, nil
		}
		switch ok, err := m.LoadFile(h.File); {
		case err != nil:
			log.Warn("history: the saved history is unusable; clients will reload their snapshots", "file", h.File, "err", err)
		case ok:
			log.Info("history: resumed from the saved history", "file", h.File)
		}
		return m, func() {
			if err := m.SaveFile(h.File); err != nil {
				log.Error("history: not saved; clients will reload their snapshots after the restart", "err", err)
				return
			}
			log.Info("history: saved", "file", h.File)
		}, nil
	case "redis":
		c, err := connect.Redis(h.Redis.URL)
		if err != nil {
			return nil, nil, fatal(fmt.Errorf("history.redis.url: %w", err))
		}
		return history.NewRedis(c, h.Redis.Prefix, lim), func() { c.Close() }, nil
	}
	return nil, func() {}, nil
}
