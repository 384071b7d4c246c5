package hub

import (
	"cmp"
	"slices"
)

// HubStats is what one served hub holds on this node, for the console.
type HubStats struct {
	Hub         string `json:"hub"`
	Connections int    `json:"connections"`
	// Groups are the hub's groups with a connection or a member, most
	// connections first, at most maxStatsGroups of them; GroupCount
	// counts them all.
	Groups     []GroupStats `json:"groups"`
	GroupCount int          `json:"groupCount"`
}

// GroupStats is one group: the connections here it reaches (joined
// themselves or through their user) and its user members.
type GroupStats struct {
	Group       string `json:"group"`
	Connections int    `json:"connections"`
	Users       int    `json:"users"`
}

// maxStatsGroups bounds the groups Stats lists per hub: a hub may have a
// group per user.
const maxStatsGroups = 50

// Stats reports each served hub's connections and groups on this node
// (with a backplane, other nodes hold their own connections).
func (s *Server) Stats() []HubStats {
	r := s.reg
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]HubStats, 0, len(r.hubs))
	for key, h := range r.hubs {
		gs := map[string]*GroupStats{}
		get := func(g string) *GroupStats {
			if gs[g] == nil {
				gs[g] = &GroupStats{Group: g}
			}
			return gs[g]
		}
		// A group reaches its connections and its members' connections.
		for g, cs := range h.groups {
			get(g).Connections = len(cs)
		}
		for g, us := range h.members {
			st := get(g)
			st.Users = len(us)
			for u := range us {
				for c := range h.users[u] {
					if _, direct := h.groups[g][c]; !direct {
						st.Connections++
					}
				}
			}
		}
		st := HubStats{Hub: key, Connections: len(h.conns), GroupCount: len(gs)}
		for _, g := range gs {
			st.Groups = append(st.Groups, *g)
		}
		slices.SortFunc(st.Groups, func(a, b GroupStats) int {
			return cmp.Or(b.Connections-a.Connections, b.Users-a.Users, cmp.Compare(a.Group, b.Group))
		})
		if len(st.Groups) > maxStatsGroups {
			st.Groups = st.Groups[:maxStatsGroups]
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b HubStats) int { return cmp.Compare(a.Hub, b.Hub) })
	return out
}
