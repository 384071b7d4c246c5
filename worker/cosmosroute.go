package worker

import (
	"fmt"
	"log/slog"

	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/schema/config"
	"github.com/changecast/changecast/schema/template"
)

// CosmosRouteFields lists the JSON Pointers the mappings of container route
// and key by: the fields of their group and user templates and their key
// pointers, once each. The Cosmos routing index keeps these per document;
// with none (hub-wide mappings keyed by id) it is not needed, since their
// audience never changes.
func CosmosRouteFields(mappings []publish.Mapping, container string) ([]template.Pointer, error) {
	var out []template.Pointer
	seen := map[string]bool{}
	add := func(p template.Pointer) {
		if s := p.String(); !seen[s] {
			seen[s] = true
			out = append(out, p)
		}
	}
	for i, m := range mappings {
		if m.Collection != container {
			continue
		}
		for _, src := range []string{m.Group, m.User} {
			if src == "" {
				continue
			}
			t, err := template.Parse(src)
			if err != nil {
				return nil, fmt.Errorf("mappings[%d]: %w", i, err)
			}
			for _, p := range t.Pointers() {
				add(p)
			}
		}
		for _, k := range m.Key {
			p, err := template.ParsePointer(k)
			if err != nil {
				return nil, fmt.Errorf("mappings[%d].key: %w", i, err)
			}
			add(p)
		}
	}
	return out, nil
}

// warnUnindexed says at start what turning the routing index off costs.
func warnUnindexed(cs *config.CosmosSource, log *slog.Logger) {
	if cs.Indexed() {
		return
	}
	log.Warn("source.cosmos.routingIndex is false: a move or soft delete of a document this worker has not seen since start is sent as a delete to every connection of the hub (changecast_route_fallback_total counts them)",
		"container", cs.Container)
}
