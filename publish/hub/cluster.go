package hub

import (
	"context"
	"slices"
	"strings"
	"time"
)

// The hub's operations as REST and negotiate see them: on one node they
// are the registry's; with a backplane they also reach the connections of
// the other nodes (sends and membership changes through the channel,
// questions through Redis).

// putPending records a negotiated connection. The registry bounds them,
// with a backplane too (where Redis holds them for whichever node takes
// the WebSocket): it keeps a reservation for each until it expires or this
// node takes it, so one node hands out at most MaxConnections at a time.
func (s *Server) putPending(ctx context.Context, key string, p pendingConn) error {
	if err := s.reg.addPending(key, p); err != nil || s.bp == nil {
		return err
	}
	if err := s.bp.putPending(ctx, key, p); err != nil {
		s.reg.forgetPending(key)
		return err
	}
	return nil
}

func (s *Server) takePending(ctx context.Context, key, hub, user string) (pendingConn, error) {
	if s.bp == nil {
		return s.reg.takePending(key, hub, user, time.Now())
	}
	p, err := s.bp.takePending(ctx, key, hub, user)
	if err == nil {
		s.reg.forgetPending(key)
	}
	return p, err
}

// deliver queues o for every connection in sc, here and on the other
// nodes. It never waits for a client: one whose queue is full is dropped.
func (s *Server) deliver(ctx context.Context, hub string, sc scope, o *outbound) error {
	s.deliverLocal(hub, sc, o)
	if s.bp == nil {
		return nil
	}
	return s.bp.publish(ctx, busMsg{Op: opSend, Hub: hub, Kind: sc.kind, Name: sc.name, Excluded: sc.excluded, Target: o.target, Args: o.args})
}

func (s *Server) deliverLocal(hub string, sc scope, o *outbound) {
	s.reg.each(hub, sc, time.Now(), func(c *conn) { c.send(o) })
}

// exists reports whether sc (a connection, a group or a user) has a
// connection on some node. With a backplane, group questions go to Redis
// alone: a membership another node removed may still be here for a moment
// (its message on the channel not yet read), and Redis is written before
// the call that changed it returns.
func (s *Server) exists(ctx context.Context, hub string, sc scope) (bool, error) {
	if s.bp == nil || sc.kind != scopeGroup {
		if local := s.reg.count(hub, sc, time.Now()) > 0; local || s.bp == nil {
			return local, nil
		}
	}
	switch sc.kind {
	case scopeConn:
		_, ok, err := s.bp.connUser(ctx, hub, sc.name)
		return ok, err
	case scopeUser:
		ids, err := s.bp.userConns(ctx, hub, sc.name)
		return len(ids) > 0, err
	case scopeGroup:
		list, err := s.listGroup(ctx, hub, sc.name)
		return len(list) > 0, err
	}
	return false, nil
}

// listGroup lists the connections in group on every node, sorted by id
// (with a backplane, as Redis has them: see exists).
func (s *Server) listGroup(ctx context.Context, hub, group string) ([]connInfo, error) {
	byID := map[string]string{}
	if s.bp == nil {
		for _, c := range s.reg.list(hub, scope{kind: scopeGroup, name: group}, time.Now()) {
			byID[c.ConnectionID] = c.UserID
		}
	} else {
		conns, users, err := s.bp.groupMembers(ctx, hub, group)
		if err != nil {
			return nil, err
		}
		for _, u := range users {
			ids, err := s.bp.userConns(ctx, hub, u)
			if err != nil {
				return nil, err
			}
			for _, id := range ids {
				byID[id] = u
			}
		}
		// Connection-level members: those whose node still renews them.
		var unknown []string
		for _, id := range conns {
			if _, ok := byID[id]; !ok {
				unknown = append(unknown, id)
			}
		}
		owners, present, err := s.bp.connsUsers(ctx, hub, unknown)
		if err != nil {
			return nil, err
		}
		for i, id := range unknown {
			if present[i] {
				byID[id] = owners[i]
			}
		}
	}
	out := make([]connInfo, 0, len(byID))
	for id, u := range byID {
		out = append(out, connInfo{ConnectionID: id, UserID: u})
	}
	slices.SortFunc(out, func(a, b connInfo) int { return strings.Compare(a.ConnectionID, b.ConnectionID) })
	return out, nil
}

// userInGroup asks the registry, or with a backplane Redis alone (see
// exists).
func (s *Server) userInGroup(ctx context.Context, hub, group, user string) (bool, error) {
	if s.bp == nil {
		return s.reg.userInGroup(hub, group, user, time.Now()), nil
	}
	if ok, err := s.bp.userGroup(ctx, hub, group, user); ok || err != nil {
		return ok, err
	}
	// Connection-level membership of one of the user's connections.
	ids, err := s.bp.userConns(ctx, hub, user)
	if err != nil || len(ids) == 0 {
		return false, err
	}
	conns, _, err := s.bp.groupMembers(ctx, hub, group)
	if err != nil {
		return false, err
	}
	for _, id := range ids {
		if slices.Contains(conns, id) {
			return true, nil
		}
	}
	return false, nil
}

// addConnToGroup reports false when the connection is not open anywhere.
func (s *Server) addConnToGroup(ctx context.Context, hub, group, id string) (bool, error) {
	if s.reg.addConnToGroup(hub, group, id) {
		if s.bp != nil {
			s.bp.joined(ctx, hub, group, id)
		}
		return true, nil
	}
	if s.bp == nil {
		return false, nil
	}
	if _, ok, err := s.bp.connUser(ctx, hub, id); !ok || err != nil {
		return false, err
	}
	// Recorded now, so the questions that follow see it; its node adds it
	// and renews the record.
	s.bp.joined(ctx, hub, group, id)
	return true, s.bp.publish(ctx, busMsg{Op: opJoin, Hub: hub, Group: group, Conn: id})
}

// removeConnFromGroups removes a connection from group (all: ""); false
// when it is not open anywhere.
func (s *Server) removeConnFromGroups(ctx context.Context, hub, group, id string) (bool, error) {
	left, found := s.reg.removeConnFromGroups(hub, group, id)
	if s.bp == nil {
		return found, nil
	}
	if found {
		s.bp.left(ctx, hub, map[string][]string{id: left})
		return true, nil
	}
	if _, ok, err := s.bp.connUser(ctx, hub, id); !ok || err != nil {
		return false, err
	}
	// Its node removes it (and forgets all its groups in Redis).
	if group != "" {
		if err := s.bp.rdb.ZRem(ctx, s.bp.key("g", hub, group), id).Err(); err != nil {
			return false, err
		}
	}
	return true, s.bp.publish(ctx, busMsg{Op: opLeave, Hub: hub, Group: group, Conn: id})
}

// addUserToGroup adds user-level membership (see registry.addUserToGroup).
func (s *Server) addUserToGroup(ctx context.Context, hub, group, user string, ttl time.Duration, keep bool) error {
	s.reg.addUserToGroup(hub, group, user, ttl, keep, time.Now())
	if s.bp == nil {
		return nil
	}
	if err := s.bp.addUser(ctx, hub, group, user, ttl); err != nil {
		return err
	}
	return s.bp.publish(ctx, busMsg{Op: opAddUser, Hub: hub, Group: group, User: user, TTL: ttl, Keep: keep})
}

// addUserConnsToGroup adds the user's open connections to group, on every
// node.
func (s *Server) addUserConnsToGroup(ctx context.Context, hub, group, user string) error {
	s.reg.addUserConnsToGroup(hub, group, user)
	if s.bp == nil {
		return nil
	}
	return s.bp.publish(ctx, busMsg{Op: opUserConns, Hub: hub, Group: group, User: user})
}

func (s *Server) removeUserFromGroups(ctx context.Context, hub, group, user string) error {
	left := s.reg.removeUserFromGroups(hub, group, user)
	if s.bp == nil {
		return nil
	}
	s.bp.left(ctx, hub, left)
	if err := s.bp.removeUser(ctx, hub, group, user); err != nil {
		return err
	}
	return s.bp.publish(ctx, busMsg{Op: opRemoveUser, Hub: hub, Group: group, User: user})
}

// closeConns sends the connections in sc a Close message, on every node.
func (s *Server) closeConns(ctx context.Context, hub string, sc scope, reason string, allow bool) error {
	s.reg.each(hub, sc, time.Now(), func(c *conn) { c.close(reason, allow) })
	if s.bp == nil {
		return nil
	}
	return s.bp.publish(ctx, busMsg{Op: opClose, Hub: hub, Kind: sc.kind, Name: sc.name, Excluded: sc.excluded, Reason: reason, Allow: allow})
}
