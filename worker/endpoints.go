package worker

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/hub"
	"github.com/changecast/changecast/publish/snapshot"
	"github.com/changecast/changecast/schema/config"
)

// mountSnapshots serves GET {negotiate.path}/snapshot next to negotiate,
// for the mappings that enable snapshots, when the source can read them.
func mountSnapshots(cfg *config.Config, mappings []publish.Mapping, neg *hub.Negotiator, src changefeed.Snapshotter,
	reg prometheus.Registerer, log *slog.Logger) error {
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
	h, err := snapshot.NewHandler(snapshot.Config{Routes: enabled, Source: src, Auth: neg,
		Logger: log.With("part", "snapshot"), Metrics: snapshot.NewMetrics(reg)})
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	neg.Handle("GET /snapshot", h)
	return nil
}
