package hub

import (
	"strings"
	"sync"
	"time"
)

// registry holds every hub's connections and group memberships. One lock
// guards it all: sends take it shared and only queue records (never block),
// so the lock is never held across I/O.
type registry struct {
	mu      sync.RWMutex
	hubs    map[string]*hubState // key: lower-cased hub name
	pending map[string]pendingConn
	closed  bool
}

// pendingConn is a negotiated connection whose WebSocket has not arrived.
type pendingConn struct {
	id, hub, user string
	expires       time.Time
}

type hubState struct {
	conns  map[string]*conn
	users  map[string]map[*conn]struct{}
	groups map[string]map[*conn]struct{} // connection-level membership
	// userGroups is user-level membership (group → user → expiry, zero:
	// none). It is kept apart from connections, so it holds for
	// connections the user opens later, as Azure SignalR does.
	userGroups map[string]map[string]time.Time
}

func newRegistry() *registry {
	return &registry{hubs: map[string]*hubState{}, pending: map[string]pendingConn{}}
}

func hubKey(h string) string { return strings.ToLower(h) }

func (r *registry) hub(name string, create bool) *hubState {
	k := hubKey(name)
	h := r.hubs[k]
	if h == nil && create {
		h = &hubState{conns: map[string]*conn{}, users: map[string]map[*conn]struct{}{},
			groups: map[string]map[*conn]struct{}{}, userGroups: map[string]map[string]time.Time{}}
		r.hubs[k] = h
	}
	return h
}

// addPending records a negotiated connection under the id the client will
// present, and drops expired ones (no sweeper goroutine needed: negotiates
// are what creates them).
func (r *registry) addPending(key string, p pendingConn, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, old := range r.pending {
		if now.After(old.expires) {
			delete(r.pending, k)
		}
	}
	r.pending[key] = p
}

// takePending consumes a negotiated connection; an unknown, used or expired
// one is not found.
func (r *registry) takePending(key string, now time.Time) (pendingConn, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pending[key]
	delete(r.pending, key)
	if !ok || now.After(p.expires) {
		return pendingConn{}, false
	}
	return p, true
}

// add registers c; false once the registry is closed (shutting down).
func (r *registry) add(c *conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	h := r.hub(c.hub, true)
	h.conns[c.id] = c
	if c.user != "" {
		addTo(h.users, c.user, c)
	}
	return true
}

func (r *registry) remove(c *conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.hub(c.hub, false)
	if h == nil || h.conns[c.id] != c {
		return
	}
	delete(h.conns, c.id)
	if c.user != "" {
		removeFrom(h.users, c.user, c)
	}
	for g := range c.groups {
		removeFrom(h.groups, g, c)
	}
}

func addTo(m map[string]map[*conn]struct{}, k string, c *conn) {
	s := m[k]
	if s == nil {
		s = map[*conn]struct{}{}
		m[k] = s
	}
	s[c] = struct{}{}
}

func removeFrom(m map[string]map[*conn]struct{}, k string, c *conn) {
	if s := m[k]; s != nil {
		delete(s, c)
		if len(s) == 0 {
			delete(m, k)
		}
	}
}

// scope selects connections of one hub.
type scope struct {
	kind     scopeKind
	name     string   // group, user or connection id
	excluded []string // connection ids left out
}

type scopeKind int

const (
	scopeAll scopeKind = iota
	scopeGroup
	scopeUser
	scopeConn
)

// each calls fn for every connection in sc once, under the shared lock; fn
// must not block or take the lock.
func (r *registry) each(hub string, sc scope, now time.Time, fn func(*conn)) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	h := r.hub(hub, false)
	if h == nil {
		return
	}
	skip := func(c *conn) bool {
		for _, id := range sc.excluded {
			if id == c.id {
				return true
			}
		}
		return false
	}
	visit := func(c *conn) {
		if !skip(c) {
			fn(c)
		}
	}
	switch sc.kind {
	case scopeAll:
		for _, c := range h.conns {
			visit(c)
		}
	case scopeConn:
		if c := h.conns[sc.name]; c != nil {
			visit(c)
		}
	case scopeUser:
		for c := range h.users[sc.name] {
			visit(c)
		}
	case scopeGroup:
		members := h.groups[sc.name]
		for c := range members {
			visit(c)
		}
		for u, exp := range h.userGroups[sc.name] {
			if !exp.IsZero() && now.After(exp) {
				continue
			}
			for c := range h.users[u] {
				if _, dup := members[c]; !dup {
					visit(c)
				}
			}
		}
	}
}

// count is the number of connections in sc.
func (r *registry) count(hub string, sc scope, now time.Time) int {
	n := 0
	r.each(hub, sc, now, func(*conn) { n++ })
	return n
}

// addConnToGroup reports false when the connection is unknown.
func (r *registry) addConnToGroup(hub, group, id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.hub(hub, false)
	if h == nil || h.conns[id] == nil {
		return false
	}
	c := h.conns[id]
	addTo(h.groups, group, c)
	if c.groups == nil {
		c.groups = map[string]struct{}{}
	}
	c.groups[group] = struct{}{}
	return true
}

// removeConnFromGroups removes a connection from group, or from all its
// groups when group is empty; false when the connection is unknown.
func (r *registry) removeConnFromGroups(hub, group, id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.hub(hub, false)
	if h == nil || h.conns[id] == nil {
		return false
	}
	c := h.conns[id]
	for g := range c.groups {
		if group == "" || g == group {
			removeFrom(h.groups, g, c)
			delete(c.groups, g)
		}
	}
	return true
}

// addUserToGroup adds user-level membership; ttl 0 never expires.
func (r *registry) addUserToGroup(hub, group, user string, ttl time.Duration, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.hub(hub, true)
	m := h.userGroups[group]
	if m == nil {
		m = map[string]time.Time{}
		h.userGroups[group] = m
	}
	for u, exp := range m { // drop expired entries while here
		if !exp.IsZero() && now.After(exp) {
			delete(m, u)
		}
	}
	var exp time.Time
	if ttl > 0 {
		exp = now.Add(ttl)
	}
	m[user] = exp
}

// removeUserFromGroups removes user from group, or from all groups when
// group is empty.
func (r *registry) removeUserFromGroups(hub, group, user string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.hub(hub, false)
	if h == nil {
		return
	}
	for g, m := range h.userGroups {
		if group == "" || g == group {
			delete(m, user)
			if len(m) == 0 {
				delete(h.userGroups, g)
			}
		}
	}
}

func (r *registry) userInGroup(hub, group, user string, now time.Time) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	h := r.hub(hub, false)
	if h == nil {
		return false
	}
	if exp, ok := h.userGroups[group][user]; ok && (exp.IsZero() || !now.After(exp)) {
		return true
	}
	for c := range h.users[user] {
		if _, ok := h.groups[group][c]; ok {
			return true
		}
	}
	return false
}

// connInfo describes a connection for listings.
type connInfo struct {
	ConnectionID string `json:"connectionId"`
	UserID       string `json:"userId,omitempty"`
}

func (r *registry) list(hub string, sc scope, now time.Time) []connInfo {
	out := []connInfo{}
	r.each(hub, sc, now, func(c *conn) { out = append(out, connInfo{c.id, c.user}) })
	return out
}

// closeAll sends every connection a Close message and refuses new ones.
func (r *registry) closeAll(reason string, allowReconnect bool) {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, h := range r.hubs {
		for _, c := range h.conns {
			c.close(reason, allowReconnect)
		}
	}
}
