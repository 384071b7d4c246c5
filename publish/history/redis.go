package history

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis keeps the histories in Redis, shared by every worker: per stream a
// counter (the last offset), an epoch, and a Redis stream of envelopes
// whose ids are their offsets, each appended with its offset in one Lua
// script (atomic), trimmed by length and age. The envelopes expire when
// the stream is quiet for twice MaxAge; its position (epoch and counter)
// is kept for a day at least (positionTTL), renewed by every append and
// snapshot, so that a client of a quiet stream (the hub-wide one, a user's)
// that reconnects learns that it missed nothing instead of reloading. A
// flushed or evicted Redis loses the epoch key: the next append starts a
// new epoch, and clients resync. Keys share a hash tag per stream, so it works on a
// Redis Cluster too. Safe for concurrent use.
type Redis struct {
	c      redis.UniversalClient
	prefix string
	lim    Limits
	now    func() time.Time
}

// NewRedis returns a store on c, its keys under prefix (default
// "changecast:history").
func NewRedis(c redis.UniversalClient, prefix string, lim Limits) *Redis {
	lim.defaults()
	if prefix == "" {
		prefix = "changecast:history"
	}
	return &Redis{c: c, prefix: prefix, lim: lim, now: time.Now}
}

func (r *Redis) keys(stream string) []string {
	tag := r.prefix + ":{" + stream + "}:"
	return []string{tag + "seq", tag + "epoch", tag + "log"}
}

func newEpoch() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// appendScript: KEYS seq, epoch, log; ARGV head, tail, candidate epoch,
// max messages, now (ms), max age (ms), ttl (s), position ttl (s).
var appendScript = redis.NewScript(`
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[3]
  redis.call('SET', KEYS[2], epoch)
  redis.call('DEL', KEYS[1], KEYS[3])
end
local off = redis.call('INCR', KEYS[1])
local payload = ARGV[1] .. ',"epoch":"' .. epoch .. '","offset":' .. off .. ARGV[2]
redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[4], off .. '-1', 't', ARGV[5], 'd', payload)
local cutoff = tonumber(ARGV[5]) - tonumber(ARGV[6])
for i = 1, 100 do
  local first = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
  if #first == 0 or tonumber(first[1][2][2]) >= cutoff then break end
  redis.call('XDEL', KEYS[3], first[1][1])
end
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('EXPIRE', KEYS[2], ARGV[8])
redis.call('EXPIRE', KEYS[3], ARGV[7])
return {epoch, off, payload}
`)

// readScript: KEYS seq, epoch, log; ARGV epoch, after, limit, now (ms),
// max age (ms). It answers {"resync", epoch} or {"ok", more, payload...}.
var readScript = redis.NewScript(`
local epoch = redis.call('GET', KEYS[2])
if not epoch then return {'resync', ''} end
if epoch ~= ARGV[1] then return {'resync', epoch} end
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local after = tonumber(ARGV[2])
if after > last then return {'resync', epoch} end
if after == last then return {'ok', 0} end
local cutoff = tonumber(ARGV[4]) - tonumber(ARGV[5])
local first = redis.call('XRANGE', KEYS[3], (after + 1) .. '-0', '+', 'COUNT', 1)
if #first == 0 then return {'resync', epoch} end
local firstOff = tonumber(string.match(first[1][1], '^(%d+)-'))
if firstOff ~= after + 1 or tonumber(first[1][2][2]) < cutoff then return {'resync', epoch} end
local limit = tonumber(ARGV[3])
local got = redis.call('XRANGE', KEYS[3], (after + 1) .. '-0', '+', 'COUNT', limit + 1)
local out = {'ok', 0}
for i = 1, math.min(#got, limit) do
  out[#out + 1] = got[i][2][4]
end
if #got > limit then out[2] = 1 end
return out
`)

// lastScript: KEYS seq, epoch; ARGV candidate epoch, position ttl (s).
var lastScript = redis.NewScript(`
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch, 'EX', ARGV[2])
  redis.call('DEL', KEYS[1])
else
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return {epoch, tonumber(redis.call('GET', KEYS[1]) or '0')}
`)

func (r *Redis) ttl() string {
	return strconv.FormatInt(int64((2*r.lim.MaxAge)/time.Second)+1, 10)
}

// minPositionTTL is how long a quiet stream's epoch and counter are kept
// at least (longer when twice MaxAge is).
const minPositionTTL = 24 * time.Hour

func (r *Redis) positionTTL() string {
	return strconv.FormatInt(int64(max(2*r.lim.MaxAge, minPositionTTL)/time.Second)+1, 10)
}

// Append implements Store.
func (r *Redis) Append(ctx context.Context, stream string, head, tail []byte) (Entry, error) {
	res, err := appendScript.Run(ctx, r.c, r.keys(stream), head, tail, newEpoch(), r.lim.MaxMessages,
		r.now().UnixMilli(), r.lim.MaxAge.Milliseconds(), r.ttl(), r.positionTTL()).Slice()
	if err != nil {
		return Entry{}, fmt.Errorf("history: append to %s: %w", stream, err)
	}
	if len(res) != 3 {
		return Entry{}, fmt.Errorf("history: append to %s: unexpected reply %v", stream, res)
	}
	epoch, _ := res[0].(string)
	off, _ := res[1].(int64)
	payload, _ := res[2].(string)
	return Entry{Epoch: epoch, Offset: uint64(off), Payload: []byte(payload)}, nil
}

// Read implements Store.
func (r *Redis) Read(ctx context.Context, stream, epoch string, after uint64, limit int) ([][]byte, bool, error) {
	if limit <= 0 {
		limit = 1000
	}
	res, err := readScript.Run(ctx, r.c, r.keys(stream), epoch, after, limit, r.now().UnixMilli(), r.lim.MaxAge.Milliseconds()).Slice()
	if err != nil {
		return nil, false, fmt.Errorf("history: read %s: %w", stream, err)
	}
	if len(res) < 2 {
		return nil, false, fmt.Errorf("history: read %s: unexpected reply %v", stream, res)
	}
	if kind, _ := res[0].(string); kind == "resync" {
		cur, _ := res[1].(string)
		if cur == "" {
			// No history at all (never written, expired or flushed):
			// the epoch the next append (or Last) starts.
			cur, _, err = r.Last(ctx, stream)
			if err != nil {
				return nil, false, err
			}
		}
		return nil, false, &ResyncError{Epoch: cur}
	}
	more, _ := res[1].(int64)
	out := make([][]byte, 0, len(res)-2)
	for _, x := range res[2:] {
		s, _ := x.(string)
		out = append(out, []byte(s))
	}
	return out, more == 1, nil
}

// Last implements Store.
func (r *Redis) Last(ctx context.Context, stream string) (string, uint64, error) {
	k := r.keys(stream)
	res, err := lastScript.Run(ctx, r.c, k[:2], newEpoch(), r.positionTTL()).Slice()
	if err != nil {
		return "", 0, fmt.Errorf("history: last of %s: %w", stream, err)
	}
	if len(res) != 2 {
		return "", 0, fmt.Errorf("history: last of %s: unexpected reply %v", stream, res)
	}
	epoch, _ := res[0].(string)
	off, _ := res[1].(int64)
	return epoch, uint64(off), nil
}

// Renew implements Renewer: every stream's keys are deleted, so its next
// append (or Last) starts a new epoch. Streams are found by their epoch
// keys (SCAN, on every master of a cluster).
func (r *Redis) Renew(ctx context.Context) ([]string, error) {
	head, tail := r.prefix+":{", "}:epoch"
	var names []string
	scan := func(ctx context.Context, c redis.Cmdable) error {
		it := c.Scan(ctx, 0, head+"*"+tail, 1000).Iterator()
		var found []string
		for it.Next(ctx) {
			k := it.Val()
			if strings.HasPrefix(k, head) && strings.HasSuffix(k, tail) && len(k) >= len(head)+len(tail) {
				found = append(found, k[len(head):len(k)-len(tail)])
			}
		}
		if err := it.Err(); err != nil {
			return err
		}
		for _, name := range found {
			if err := r.c.Del(ctx, r.keys(name)...).Err(); err != nil {
				return err
			}
		}
		names = append(names, found...)
		return nil
	}
	var err error
	if cc, ok := r.c.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return scan(ctx, c)
		})
	} else {
		err = scan(ctx, r.c)
	}
	if err != nil {
		return names, fmt.Errorf("history: renew: %w", err)
	}
	return names, nil
}
