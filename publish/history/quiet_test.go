package history

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/changecast/changecast/internal/testkit"
)

// TestRedisQuietStreamKeepsItsPosition: once a quiet stream's envelopes
// expired (twice MaxAge), a client that holds its last offset still
// catches up (nothing missed) instead of getting a resync, whether the
// stream was written or never was (a hub-wide or user stream that only a
// snapshot named); a client that missed an envelope that expired still
// resyncs. Before, the epoch expired with the envelopes, and every client
// connected longer than twice MaxAge reloaded its snapshot on a reconnect.
func TestRedisQuietStreamKeepsItsPosition(t *testing.T) {
	url := testkit.Redis(t)
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(opt)
	t.Cleanup(func() { rc.Close() })
	ctx := context.Background()
	r := NewRedis(rc, testkit.RedisPrefix(t, url), Limits{MaxAge: time.Second})

	written := appendN(t, r, "h/g/a", 3)
	quietEpoch, quietLast, err := r.Last(ctx, "h/u/x")
	if err != nil {
		t.Fatal(err)
	}
	log := r.keys("h/g/a")[2]
	testkit.Until(t, 20*time.Second, "the envelopes to expire (twice MaxAge)", func() bool {
		n, err := rc.Exists(ctx, log).Result()
		return err == nil && n == 0
	})

	if envs, _, err := r.Read(ctx, "h/g/a", written.Epoch, written.Offset, 10); err != nil || len(envs) != 0 {
		t.Fatalf("a client at the last offset of a quiet stream: %d envelopes, %v; want nothing to catch up", len(envs), err)
	}
	if envs, _, err := r.Read(ctx, "h/u/x", quietEpoch, quietLast, 10); err != nil || len(envs) != 0 {
		t.Fatalf("a client of a stream never written: %d envelopes, %v; want nothing to catch up", len(envs), err)
	}
	if _, _, err := r.Read(ctx, "h/g/a", written.Epoch, written.Offset-1, 10); !IsResync(err) {
		t.Fatalf("a client that missed an expired envelope: %v, want a resync", err)
	}
	if epoch, last, err := r.Last(ctx, "h/g/a"); err != nil || epoch != written.Epoch || last != written.Offset {
		t.Fatalf("Last of the quiet stream: %s %d %v, want %s %d", epoch, last, err, written.Epoch, written.Offset)
	}
	next := appendN(t, r, "h/g/a", 1)
	if next.Epoch != written.Epoch || next.Offset != written.Offset+1 {
		t.Fatalf("the next append: %+v, want offset %d in epoch %s", next, written.Offset+1, written.Epoch)
	}
	if envs, _, err := r.Read(ctx, "h/g/a", written.Epoch, written.Offset, 10); err != nil || len(envs) != 1 {
		t.Fatalf("catching up the new envelope: %d, %v", len(envs), err)
	}
}
