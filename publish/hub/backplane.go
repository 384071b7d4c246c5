package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// defaultNodeTTL is how long a node's connections stay known after its
// last renewal: a node that dies loses them this long after.
const defaultNodeTTL = 15 * time.Second

// backplane joins hub processes through Redis, as ASP.NET Core's Redis
// backplane and Centrifugo's Redis engine do: every node keeps its own
// connections and delivers to them; what reaches a node (a REST call, a
// batch of the in-process publisher) is delivered locally and published on
// one Redis channel for the others. Redis also holds what any node must be
// able to answer: user-group memberships (with their TTLs), which node's
// connection exists (keys renewed by their node, so a dead node's expire),
// connection-level groups, and the connection tokens negotiate handed out,
// so that any node may answer negotiate and another take the WebSocket.
//
// Connections stay on the node that accepted them: a Server-Sent Events or
// long-polling client's POSTs and polls, and a stateful reconnect, must
// reach that node again (sticky sessions on the id= query parameter, or on
// the client address).
type backplane struct {
	s      *Server
	cfg    Backplane
	rdb    *redis.Client
	node   string
	log    *slog.Logger
	ready  chan struct{}
	prefix string
}

// busMsg is what nodes tell each other on the channel.
type busMsg struct {
	Node     string            `json:"n"`
	Op       string            `json:"op"`
	Hub      string            `json:"h"`
	Kind     scopeKind         `json:"k,omitempty"`
	Name     string            `json:"s,omitempty"`
	Excluded []string          `json:"x,omitempty"`
	Target   string            `json:"t,omitempty"`
	Args     []json.RawMessage `json:"a,omitempty"`
	Group    string            `json:"g,omitempty"`
	User     string            `json:"u,omitempty"`
	Conn     string            `json:"c,omitempty"`
	TTL      time.Duration     `json:"ttl,omitempty"`
	Keep     bool              `json:"keep,omitempty"`
	Reason   string            `json:"r,omitempty"`
	Allow    bool              `json:"allow,omitempty"`
}

// Bus operations.
const (
	opSend       = "send"
	opJoin       = "join"       // a connection joins a group
	opLeave      = "leave"      // a connection leaves a group (all: Group empty)
	opAddUser    = "addUser"    // user-level membership, TTL
	opUserConns  = "userConns"  // the user's open connections join (ttl=0)
	opRemoveUser = "removeUser" // (all groups: Group empty)
	opClose      = "close"
)

func newBackplane(cfg Backplane, s *Server) (*backplane, error) {
	opt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("hub: Backplane.RedisURL: %w", err)
	}
	b := &backplane{s: s, cfg: cfg, rdb: redis.NewClient(opt), node: newID(), ready: make(chan struct{}),
		prefix: cfg.Prefix}
	b.log = s.o.log.With("node", b.node)
	return b, nil
}

func (b *backplane) channel() string { return b.prefix + ":bus" }

func (b *backplane) key(kind, hub, name string) string {
	return b.prefix + ":" + kind + ":" + hub + ":" + name
}

// run subscribes to the channel (ready is closed once subscribed), applies
// what other nodes publish and renews this node's connections, until ctx
// ends.
func (b *backplane) run(ctx context.Context) error {
	sub := b.rdb.Subscribe(ctx, b.channel())
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		return fmt.Errorf("hub: backplane: subscribe: %w", err)
	}
	close(b.ready)
	ch := sub.Channel(redis.WithChannelSize(10_000))
	t := time.NewTicker(b.cfg.NodeTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-ch:
			if !ok {
				return errors.New("hub: backplane: subscription closed")
			}
			var msg busMsg
			if err := json.Unmarshal([]byte(m.Payload), &msg); err != nil {
				b.log.Warn("hub: backplane: bad message", "err", err)
				continue
			}
			if msg.Node != b.node {
				b.apply(msg)
			}
		case <-t.C:
			if err := b.renew(ctx); err != nil && ctx.Err() == nil {
				b.log.Warn("hub: backplane: renewing connections failed", "err", err)
			}
		}
	}
}

func (b *backplane) close() { _ = b.rdb.Close() }

// publish tells the other nodes.
func (b *backplane) publish(ctx context.Context, m busMsg) error {
	m.Node = b.node
	p, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := b.rdb.Publish(ctx, b.channel(), p).Err(); err != nil {
		return fmt.Errorf("hub: backplane: publish: %w", err)
	}
	return nil
}

// apply does what another node published, to this node's connections.
func (b *backplane) apply(m busMsg) {
	r, now := b.s.reg, time.Now()
	switch m.Op {
	case opSend:
		b.s.deliverLocal(m.Hub, scope{kind: m.Kind, name: m.Name, excluded: m.Excluded}, newOutbound(m.Target, m.Args))
	case opJoin:
		if r.addConnToGroup(m.Hub, m.Group, m.Conn) {
			b.joined(context.Background(), m.Hub, m.Group, m.Conn)
		}
	case opLeave:
		if groups, _ := r.removeConnFromGroups(m.Hub, m.Group, m.Conn); len(groups) > 0 {
			b.left(context.Background(), m.Hub, map[string][]string{m.Conn: groups})
		}
	case opAddUser:
		r.addUserToGroup(m.Hub, m.Group, m.User, m.TTL, m.Keep, now)
	case opUserConns:
		r.addUserConnsToGroup(m.Hub, m.Group, m.User)
	case opRemoveUser:
		b.left(context.Background(), m.Hub, r.removeUserFromGroups(m.Hub, m.Group, m.User))
	case opClose:
		r.each(m.Hub, scope{kind: m.Kind, name: m.Name, excluded: m.Excluded}, now, func(c *conn) { c.close(m.Reason, m.Allow) })
	}
}

func ms(t time.Time) float64 { return float64(t.UnixMilli()) }

// never is the score of memberships without expiry.
const never = math.MaxInt64 / 4

// prune removes the members of the sorted set key whose score (their
// expiry) has passed. Writes renew a set's key, so while traffic goes on
// the key never expires and its expired members would pile up; every
// write and read of a set prunes it (ZRANGEBYSCORE from "(now" already
// skips what this removes).
func prune(ctx context.Context, p redis.Pipeliner, key string) {
	p.ZRemRangeByScore(ctx, key, "-inf", strconv.FormatInt(time.Now().UnixMilli(), 10))
}

func (b *backplane) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}

// connected records a connection of this node.
func (b *backplane) connected(c *conn) {
	ctx, cancel := b.ctx()
	defer cancel()
	exp := time.Now().Add(b.cfg.NodeTTL)
	p := b.rdb.TxPipeline()
	p.Set(ctx, b.key("c", c.hub, c.id), c.user, b.cfg.NodeTTL)
	if c.user != "" {
		uk := b.key("u", c.hub, c.user)
		prune(ctx, p, uk)
		p.ZAdd(ctx, uk, redis.Z{Score: ms(exp), Member: c.id})
		p.Expire(ctx, uk, b.cfg.NodeTTL)
	}
	if _, err := p.Exec(ctx); err != nil {
		b.log.Warn("hub: backplane: recording a connection failed", "err", err)
	}
	// The user's memberships this node may not have heard of (it started
	// after they were made).
	if c.user == "" {
		return
	}
	now := time.Now()
	zs, err := b.rdb.ZRangeByScoreWithScores(ctx, b.key("ug", c.hub, c.user), &redis.ZRangeBy{Min: "(" + strconv.FormatInt(now.UnixMilli(), 10), Max: "+inf"}).Result()
	if err != nil {
		b.log.Warn("hub: backplane: loading a user's groups failed", "err", err)
		return
	}
	for _, z := range zs {
		g, _ := z.Member.(string)
		var ttl time.Duration
		if z.Score < never {
			ttl = time.UnixMilli(int64(z.Score)).Sub(now)
		}
		if ttl >= 0 {
			b.s.reg.addUserToGroup(c.hub, g, c.user, ttl, false, now)
		}
	}
}

// disconnected forgets a connection of this node.
func (b *backplane) disconnected(c *conn, groups []string) {
	ctx, cancel := b.ctx()
	defer cancel()
	p := b.rdb.TxPipeline()
	p.Del(ctx, b.key("c", c.hub, c.id))
	if c.user != "" {
		p.ZRem(ctx, b.key("u", c.hub, c.user), c.id)
	}
	for _, g := range groups {
		p.ZRem(ctx, b.key("g", c.hub, g), c.id)
	}
	if _, err := p.Exec(ctx); err != nil {
		b.log.Warn("hub: backplane: forgetting a connection failed", "err", err)
	}
}

// joined records a connection-level membership of a connection here.
func (b *backplane) joined(ctx context.Context, hub, group, id string) {
	gk := b.key("g", hub, group)
	p := b.rdb.TxPipeline()
	prune(ctx, p, gk)
	p.ZAdd(ctx, gk, redis.Z{Score: ms(time.Now().Add(b.cfg.NodeTTL)), Member: id})
	p.Expire(ctx, gk, b.cfg.NodeTTL)
	if _, err := p.Exec(ctx); err != nil {
		b.log.Warn("hub: backplane: recording a group membership failed", "err", err)
	}
}

// left forgets connection-level memberships (connection id → the groups
// it left), so questions asked through Redis see them gone before the
// memberships would expire.
func (b *backplane) left(ctx context.Context, hub string, groups map[string][]string) {
	if len(groups) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	p := b.rdb.TxPipeline()
	for id, gs := range groups {
		for _, g := range gs {
			p.ZRem(ctx, b.key("g", hub, g), id)
		}
	}
	if _, err := p.Exec(ctx); err != nil {
		b.log.Warn("hub: backplane: forgetting a group membership failed", "err", err)
	}
}

// renew extends this node's connections and their groups for another
// NodeTTL, in pipelines of a bounded size.
func (b *backplane) renew(ctx context.Context) error {
	exp := ms(time.Now().Add(b.cfg.NodeTTL))
	p := b.rdb.Pipeline()
	n := 0
	var firstErr error
	flush := func() {
		if _, err := p.Exec(ctx); err != nil && firstErr == nil {
			firstErr = err
		}
		n = 0
	}
	pruned := map[string]bool{} // each set once per renewal
	zadd := func(key, id string) {
		if !pruned[key] {
			pruned[key] = true
			prune(ctx, p, key)
			n++
		}
		p.ZAdd(ctx, key, redis.Z{Score: exp, Member: id})
		p.Expire(ctx, key, b.cfg.NodeTTL)
		n += 2
	}
	for _, c := range b.s.reg.presence() {
		p.Set(ctx, b.key("c", c.hub, c.id), c.user, b.cfg.NodeTTL)
		n++
		if c.user != "" {
			zadd(b.key("u", c.hub, c.user), c.id)
		}
		for _, g := range c.groups {
			zadd(b.key("g", c.hub, g), c.id)
		}
		if n >= 1000 {
			flush()
		}
	}
	if n > 0 {
		flush()
	}
	return firstErr
}

// putPending stores a negotiated connection for whichever node takes its
// WebSocket.
func (b *backplane) putPending(ctx context.Context, key string, p pendingConn) error {
	v, _ := json.Marshal([]any{p.id, p.hub, p.user, p.stateful})
	if err := b.rdb.Set(ctx, b.prefix+":p:"+key, v, time.Until(p.expires)).Err(); err != nil {
		return fmt.Errorf("hub: backplane: %w", err)
	}
	return nil
}

// takePending consumes a negotiated connection (GETDEL: used once).
func (b *backplane) takePending(ctx context.Context, key, hub, user string) (pendingConn, error) {
	v, err := b.rdb.GetDel(ctx, b.prefix+":p:"+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return pendingConn{}, errNoPending
	}
	if err != nil {
		return pendingConn{}, fmt.Errorf("hub: backplane: %w", err)
	}
	var f []json.RawMessage
	var p pendingConn
	if json.Unmarshal(v, &f) != nil || len(f) != 4 || json.Unmarshal(f[0], &p.id) != nil || json.Unmarshal(f[1], &p.hub) != nil ||
		json.Unmarshal(f[2], &p.user) != nil || json.Unmarshal(f[3], &p.stateful) != nil {
		return pendingConn{}, errNoPending
	}
	switch {
	case p.hub != hub:
		return pendingConn{}, errNoPending
	case p.user != user:
		// Put back for its owner, as the registry keeps it.
		_ = b.rdb.Set(ctx, b.prefix+":p:"+key, v, b.s.o.connectTokenTTL).Err()
		return pendingConn{}, errWrongUser
	}
	return p, nil
}

func nowScore() string { return "(" + strconv.FormatInt(time.Now().UnixMilli(), 10) }

// connUser says whether connection id of hub is open on some node, and its
// user.
func (b *backplane) connUser(ctx context.Context, hub, id string) (string, bool, error) {
	u, err := b.rdb.Get(ctx, b.key("c", hub, id)).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	return u, err == nil, err
}

// userConns are the open connections of user of hub on every node.
func (b *backplane) userConns(ctx context.Context, hub, user string) ([]string, error) {
	uk := b.key("u", hub, user)
	p := b.rdb.Pipeline()
	prune(ctx, p, uk)
	ids := p.ZRangeByScore(ctx, uk, &redis.ZRangeBy{Min: nowScore(), Max: "+inf"})
	if _, err := p.Exec(ctx); err != nil {
		return nil, fmt.Errorf("hub: backplane: %w", err)
	}
	return ids.Val(), nil
}

// groupMembers are the connections in group (connection-level) and the
// users in it (user-level, not expired).
func (b *backplane) groupMembers(ctx context.Context, hub, group string) (conns, users []string, err error) {
	gk, gu := b.key("g", hub, group), b.key("gu", hub, group)
	p := b.rdb.Pipeline()
	prune(ctx, p, gk)
	prune(ctx, p, gu)
	cs := p.ZRangeByScore(ctx, gk, &redis.ZRangeBy{Min: nowScore(), Max: "+inf"})
	us := p.ZRangeByScore(ctx, gu, &redis.ZRangeBy{Min: nowScore(), Max: "+inf"})
	if _, err := p.Exec(ctx); err != nil {
		return nil, nil, fmt.Errorf("hub: backplane: %w", err)
	}
	return cs.Val(), us.Val(), nil
}

// addUser records user-level membership in Redis (ttl 0: no expiry).
func (b *backplane) addUser(ctx context.Context, hub, group, user string, ttl time.Duration) error {
	score := float64(never)
	if ttl > 0 {
		score = ms(time.Now().Add(ttl))
	}
	life := ttl
	if life <= 0 || life > userGroupTTL {
		life = userGroupTTL
	}
	gu, ug := b.key("gu", hub, group), b.key("ug", hub, user)
	p := b.rdb.TxPipeline()
	for _, kv := range [][2]string{{gu, user}, {ug, group}} {
		prune(ctx, p, kv[0])
		p.ZAdd(ctx, kv[0], redis.Z{Score: score, Member: kv[1]})
		p.ExpireNX(ctx, kv[0], life)
		p.ExpireGT(ctx, kv[0], life)
	}
	// Keep a user's list bounded as each node bounds its own copy.
	p.ZRemRangeByRank(ctx, ug, 0, int64(-b.s.cfg.Limits.MaxGroupsPerUser-1))
	if _, err := p.Exec(ctx); err != nil {
		return fmt.Errorf("hub: backplane: %w", err)
	}
	return nil
}

// removeUser removes user from group, or from all its groups.
func (b *backplane) removeUser(ctx context.Context, hub, group, user string) error {
	ug := b.key("ug", hub, user)
	groups := []string{group}
	if group == "" {
		var err error
		if groups, err = b.rdb.ZRange(ctx, ug, 0, -1).Result(); err != nil {
			return fmt.Errorf("hub: backplane: %w", err)
		}
	}
	// The user's connections leave a named group now too (their nodes
	// forget them from all groups when told).
	var conns []any
	if group != "" {
		ids, err := b.userConns(ctx, hub, user)
		if err != nil {
			return fmt.Errorf("hub: backplane: %w", err)
		}
		for _, id := range ids {
			conns = append(conns, id)
		}
	}
	p := b.rdb.TxPipeline()
	for _, g := range groups {
		p.ZRem(ctx, b.key("gu", hub, g), user)
		p.ZRem(ctx, ug, g)
	}
	if len(conns) > 0 {
		p.ZRem(ctx, b.key("g", hub, group), conns...)
	}
	if _, err := p.Exec(ctx); err != nil {
		return fmt.Errorf("hub: backplane: %w", err)
	}
	return nil
}

// userGroup reports whether user is a member of group (user-level, not
// expired).
func (b *backplane) userGroup(ctx context.Context, hub, group, user string) (bool, error) {
	gu := b.key("gu", hub, group)
	p := b.rdb.Pipeline()
	prune(ctx, p, gu)
	score := p.ZScore(ctx, gu, user)
	_, _ = p.Exec(ctx) // the error is score's (redis.Nil: not a member) or the pipeline's
	sc, err := score.Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("hub: backplane: %w", err)
	}
	return sc > ms(time.Now()), nil
}

// connsUsers are the users of connections ids, and whether each is open
// on some node.
func (b *backplane) connsUsers(ctx context.Context, hub string, ids []string) (users []string, present []bool, err error) {
	if len(ids) == 0 {
		return nil, nil, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = b.key("c", hub, id)
	}
	vals, err := b.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("hub: backplane: %w", err)
	}
	users, present = make([]string, len(ids)), make([]bool, len(ids))
	for i, v := range vals {
		users[i], present[i] = v.(string)
	}
	return users, present, nil
}
