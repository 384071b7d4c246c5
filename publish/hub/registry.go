package hub

import (
	"container/heap"
	"errors"
	"strings"
	"sync"
	"time"
)

// registry holds the served hubs' connections and group memberships. One
// lock guards it all: sends take it shared and only queue records (never
// block), so the lock is never held across I/O. Every request does a
// bounded amount of work under it; expiries are swept by sweep, which the
// Server calls on a timer.
type registry struct {
	mu   sync.RWMutex
	hubs map[string]*hubState // the served hubs, fixed at creation; key: hubKey
	lim  limits

	pending  map[string]pendingConn
	live     map[string]*conn // every open connection, by the token it was opened with
	pendingQ []pendingExpiry  // in expiry order: every pending conn has the same TTL
	pendingH int              // pendingQ[:pendingH] is consumed

	expiries memberHeap // memberships with an expiry, soonest first

	conns   int            // connections open or being opened
	perUser map[string]int // the same per user id (anonymous-less connections are not counted here)
	shut    bool
}

// limits bound the registry.
type limits struct {
	maxConns, maxPerUser, maxGroupsPerUser int
}

var (
	errTooManyConns     = errors.New("the hub has reached its connection limit")
	errTooManyUserConns = errors.New("the user has reached its connection limit")
	errShuttingDown     = errors.New("the hub is shutting down")
	errNoPending        = errors.New("no such connection (expired, used, or never negotiated)")
	errWrongUser        = errors.New("the connection was negotiated for another user")
)

// pendingConn is a negotiated connection whose WebSocket has not arrived.
type pendingConn struct {
	id, hub, user string
	expires       time.Time
	stateful      bool // negotiate offered stateful reconnect
}

type pendingExpiry struct {
	key     string
	expires time.Time
}

type hubState struct {
	conns  map[string]*conn
	users  map[string]map[*conn]struct{}
	groups map[string]map[*conn]struct{} // connection-level membership
	// members is user-level membership (group → user). It is kept apart
	// from connections, so it holds for connections the user opens later,
	// as Azure SignalR does; byUser indexes the same memberships by user.
	members map[string]map[string]*membership
	byUser  map[string]map[string]*membership
}

// membership is one user in one group of one hub.
type membership struct {
	hub         *hubState
	group, user string
	updated     time.Time     // last join: the per-user bound drops the oldest
	exp         time.Time     // zero: no expiry
	ttl         time.Duration // with keep: the renewal while connected
	keep        bool          // kept while the user has a connection (anonymous negotiate)
	idx         int           // index in registry.expiries; -1 when not there
}

// live reports whether m counts at now: not expired, or kept because its
// user is connected.
func (m *membership) live(now time.Time) bool {
	return m.exp.IsZero() || !now.After(m.exp) || (m.keep && len(m.hub.users[m.user]) > 0)
}

func newRegistry(hubs []string, lim limits) *registry {
	r := &registry{hubs: map[string]*hubState{}, lim: lim, pending: map[string]pendingConn{}, perUser: map[string]int{},
		live: map[string]*conn{}}
	for _, name := range hubs {
		r.hubs[hubKey(name)] = &hubState{conns: map[string]*conn{}, users: map[string]map[*conn]struct{}{},
			groups: map[string]map[*conn]struct{}{}, members: map[string]map[string]*membership{},
			byUser: map[string]map[string]*membership{}}
	}
	return r
}

func hubKey(h string) string { return strings.ToLower(h) }

// served reports whether hub (any case) is one of the registry's hubs. The
// set never changes, so no lock is needed.
func (r *registry) served(hub string) bool { return r.hubs[hubKey(hub)] != nil }

// hub is the state of a served hub (key already lower-cased), or nil.
func (r *registry) hub(key string) *hubState { return r.hubs[key] }

// admit reports whether user could open one more connection now.
func (r *registry) admit(user string) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.checkLimits(user)
}

func (r *registry) checkLimits(user string) error {
	switch {
	case r.shut:
		return errShuttingDown
	case r.conns >= r.lim.maxConns:
		return errTooManyConns
	case user != "" && r.perUser[user] >= r.lim.maxPerUser:
		return errTooManyUserConns
	}
	return nil
}

// open counts c as open under its token, or says which limit it would
// pass. Every successful open is matched by one closed, when c ends.
func (r *registry) open(c *conn) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.checkLimits(c.user); err != nil {
		return err
	}
	r.conns++
	if c.user != "" {
		r.perUser[c.user]++
	}
	r.live[c.token] = c
	return nil
}

// closed forgets c: its sends, groups and count. It returns c's
// connection-level groups; false when c was forgotten already.
func (r *registry) closed(c *conn) (groups []string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.live[c.token] != c {
		return nil, false
	}
	for g := range c.groups {
		groups = append(groups, g)
	}
	delete(r.live, c.token)
	r.conns--
	if c.user != "" {
		if r.perUser[c.user]--; r.perUser[c.user] <= 0 {
			delete(r.perUser, c.user)
		}
	}
	r.removeLocked(c)
	return groups, true
}

// presenceInfo is what the backplane renews of a registered connection.
type presenceInfo struct {
	hub, id, user string
	groups        []string
}

// presence lists the registered connections with their groups.
func (r *registry) presence() []presenceInfo {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []presenceInfo
	for hub, h := range r.hubs {
		for _, c := range h.conns {
			p := presenceInfo{hub: hub, id: c.id, user: c.user}
			for g := range c.groups {
				p.groups = append(p.groups, g)
			}
			out = append(out, p)
		}
	}
	return out
}

// lookup is the open connection of hub opened with token, or nil.
func (r *registry) lookup(token, hub string) *conn {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if c := r.live[token]; c != nil && c.hub == hub {
		return c
	}
	return nil
}

// liveConns is every open connection (for the sweep, which checks them
// outside the lock).
func (r *registry) liveConns() []*conn {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*conn, 0, len(r.live))
	for _, c := range r.live {
		out = append(out, c)
	}
	return out
}

// eachLive calls fn for every open connection, under the registry's read
// lock: fn must not take it (a push that ends a slow connection is fine).
func (r *registry) eachLive(fn func(*conn)) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, c := range r.live {
		fn(c)
	}
}

// addPending records a negotiated connection under the id the client will
// present; sweep drops it once expired. Negotiated connections waiting for
// their WebSocket are bounded like open ones (errTooManyConns).
func (r *registry) addPending(key string, p pendingConn) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) >= r.lim.maxConns {
		return errTooManyConns
	}
	r.pending[key] = p
	r.pendingQ = append(r.pendingQ, pendingExpiry{key, p.expires})
	return nil
}

// takePending consumes the negotiated connection key of hub for user. An
// unknown, used, expired or other hub's one is errNoPending; one
// negotiated for another user is errWrongUser and stays for its owner.
func (r *registry) takePending(key, hub, user string, now time.Time) (pendingConn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pending[key]
	switch {
	case !ok || p.hub != hub:
		return pendingConn{}, errNoPending
	case now.After(p.expires):
		delete(r.pending, key)
		return pendingConn{}, errNoPending
	case p.user != user:
		return pendingConn{}, errWrongUser
	}
	delete(r.pending, key)
	return p, nil
}

// forgetPending drops the negotiated connection key, if held (with a
// backplane the registry holds reservations: see Server.putPending).
func (r *registry) forgetPending(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pending, key)
}

// add registers c (its hub is served); false once the registry is closed
// (shutting down).
func (r *registry) add(c *conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.hubs[c.hub]
	if r.shut || h == nil || r.live[c.token] != c {
		return false
	}
	h.conns[c.id] = c
	if c.user != "" {
		addTo(h.users, c.user, c)
	}
	return true
}

func (r *registry) removeLocked(c *conn) {
	h := r.hubs[c.hub]
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
	h := r.hubs[hub]
	if h == nil {
		return
	}
	// excluded comes from the caller: a long list is looked up in a set,
	// so a send costs connections plus ids, not their product.
	var excluded map[string]bool
	if len(sc.excluded) > 8 {
		excluded = make(map[string]bool, len(sc.excluded))
		for _, id := range sc.excluded {
			excluded[id] = true
		}
	}
	skip := func(c *conn) bool {
		if excluded != nil {
			return excluded[c.id]
		}
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
		conns := h.groups[sc.name]
		for c := range conns {
			visit(c)
		}
		for u, m := range h.members[sc.name] {
			if !m.live(now) {
				continue
			}
			for c := range h.users[u] {
				if _, dup := conns[c]; !dup {
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
	h := r.hubs[hub]
	if h == nil || h.conns[id] == nil {
		return false
	}
	h.joinConn(group, h.conns[id])
	return true
}

func (h *hubState) joinConn(group string, c *conn) {
	addTo(h.groups, group, c)
	if c.groups == nil {
		c.groups = map[string]struct{}{}
	}
	c.groups[group] = struct{}{}
}

// removeConnFromGroups removes a connection from group, or from all its
// groups when group is empty; false when the connection is unknown.
func (r *registry) removeConnFromGroups(hub, group, id string) (left []string, found bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.hubs[hub]
	if h == nil || h.conns[id] == nil {
		return nil, false
	}
	return h.leaveConn(group, h.conns[id]), true
}

// leaveConn removes c from group, or from all its groups when group is
// empty, and returns the groups it left.
func (h *hubState) leaveConn(group string, c *conn) (left []string) {
	for g := range c.groups {
		if group == "" || g == group {
			removeFrom(h.groups, g, c)
			delete(c.groups, g)
			left = append(left, g)
		}
	}
	return left
}

// addUserToGroup adds user-level membership, renewing it when it exists;
// ttl 0 never expires, and keep (with a ttl) keeps it while the user is
// connected. A user already in the most groups allowed leaves the one it
// joined longest ago. False when hub is not served.
func (r *registry) addUserToGroup(hub, group, user string, ttl time.Duration, keep bool, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.hubs[hub]
	if h == nil {
		return false
	}
	m := h.members[group][user]
	if m == nil {
		mine := h.byUser[user]
		if len(mine) >= r.lim.maxGroupsPerUser {
			var oldest *membership
			for _, o := range mine { // at most maxGroupsPerUser
				if oldest == nil || o.updated.Before(oldest.updated) {
					oldest = o
				}
			}
			r.drop(oldest)
		}
		m = &membership{hub: h, group: group, user: user, idx: -1}
		if h.members[group] == nil {
			h.members[group] = map[string]*membership{}
		}
		h.members[group][user] = m
		if h.byUser[user] == nil {
			h.byUser[user] = map[string]*membership{}
		}
		h.byUser[user][group] = m
	}
	m.updated = now
	m.ttl, m.keep = ttl, keep && ttl > 0
	switch {
	case ttl <= 0:
		m.exp = time.Time{}
		if m.idx >= 0 {
			heap.Remove(&r.expiries, m.idx)
		}
	case m.idx >= 0:
		m.exp = now.Add(ttl)
		heap.Fix(&r.expiries, m.idx)
	default:
		m.exp = now.Add(ttl)
		heap.Push(&r.expiries, m)
	}
	return true
}

// addUserConnsToGroup adds the user's open connections to group, and
// nothing for connections it opens later (Azure's ttl=0).
func (r *registry) addUserConnsToGroup(hub, group, user string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h := r.hubs[hub]; h != nil {
		for c := range h.users[user] {
			h.joinConn(group, c)
		}
	}
}

// drop removes a membership everywhere.
func (r *registry) drop(m *membership) {
	h := m.hub
	if g := h.members[m.group]; g != nil {
		delete(g, m.user)
		if len(g) == 0 {
			delete(h.members, m.group)
		}
	}
	if u := h.byUser[m.user]; u != nil {
		delete(u, m.group)
		if len(u) == 0 {
			delete(h.byUser, m.user)
		}
	}
	if m.idx >= 0 {
		heap.Remove(&r.expiries, m.idx)
	}
}

// removeUserFromGroups removes user from group, or from all groups when
// group is empty, both its membership and its connections', and returns
// the groups each of the user's connections here left.
func (r *registry) removeUserFromGroups(hub, group, user string) (left map[string][]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.hubs[hub]
	if h == nil {
		return nil
	}
	if group == "" {
		for _, m := range h.byUser[user] {
			r.drop(m)
		}
	} else if m := h.members[group][user]; m != nil {
		r.drop(m)
	}
	for c := range h.users[user] {
		if gs := h.leaveConn(group, c); len(gs) > 0 {
			if left == nil {
				left = map[string][]string{}
			}
			left[c.id] = gs
		}
	}
	return left
}

func (r *registry) userInGroup(hub, group, user string, now time.Time) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	h := r.hubs[hub]
	if h == nil {
		return false
	}
	if m := h.members[group][user]; m != nil && m.live(now) {
		return true
	}
	for c := range h.users[user] {
		if _, ok := h.groups[group][c]; ok {
			return true
		}
	}
	return false
}

// sweepBatch bounds the expiries handled under one lock hold, so a sweep
// of many never holds up sends for long.
const sweepBatch = 4096

// sweep drops the memberships and negotiated connections expired at now
// (renewing kept memberships of connected users), in batches.
func (r *registry) sweep(now time.Time) {
	for more := true; more; {
		more = r.sweepSome(now, sweepBatch)
	}
}

func (r *registry) sweepSome(now time.Time, n int) (more bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for ; n > 0 && len(r.expiries) > 0; n-- {
		m := r.expiries[0]
		if !now.After(m.exp) {
			break
		}
		if m.keep && len(m.hub.users[m.user]) > 0 {
			m.exp = now.Add(m.ttl)
			heap.Fix(&r.expiries, 0)
			continue
		}
		r.drop(m)
	}
	for ; n > 0 && r.pendingH < len(r.pendingQ); n-- {
		e := r.pendingQ[r.pendingH]
		if !now.After(e.expires) {
			break
		}
		if p, ok := r.pending[e.key]; ok && p.expires.Equal(e.expires) {
			delete(r.pending, e.key)
		}
		r.pendingQ[r.pendingH] = pendingExpiry{}
		r.pendingH++
	}
	if r.pendingH > 0 && r.pendingH*2 >= len(r.pendingQ) {
		r.pendingQ = append(r.pendingQ[:0], r.pendingQ[r.pendingH:]...)
		r.pendingH = 0
	}
	return n == 0
}

// registryStats counts what the registry holds (tests and metrics).
type registryStats struct {
	Conns, Pending, Memberships, Expiring, Groups, Users int
}

func (r *registry) stats() registryStats {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s := registryStats{Conns: r.conns, Pending: len(r.pending), Expiring: len(r.expiries)}
	for _, h := range r.hubs {
		s.Groups += len(h.groups) + len(h.members)
		s.Users += len(h.users) + len(h.byUser)
		for _, g := range h.members {
			s.Memberships += len(g)
		}
	}
	return s
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
	r.shut = true
	r.mu.Unlock()
	for _, c := range r.liveConns() {
		c.close(reason, allowReconnect)
	}
}

// memberHeap orders memberships by expiry (container/heap).
type memberHeap []*membership

func (h memberHeap) Len() int           { return len(h) }
func (h memberHeap) Less(i, j int) bool { return h[i].exp.Before(h[j].exp) }
func (h memberHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *memberHeap) Push(x any) {
	m := x.(*membership)
	m.idx = len(*h)
	*h = append(*h, m)
}
func (h *memberHeap) Pop() any {
	old := *h
	m := old[len(old)-1]
	old[len(old)-1] = nil
	m.idx = -1
	*h = old[:len(old)-1]
	return m
}
