package testkit

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis returns the URL of the test Redis (a private redis-server that
// `make test` starts and exports as CHANGECAST_REDIS_URL). Under -short the
// test is skipped; without the variable it fails, saying how to get one.
// Tests share it: give each its own keys and channels with RedisPrefix.
func Redis(t testing.TB) string {
	t.Helper()
	Integration(t, "Redis (CHANGECAST_REDIS_URL; make test starts one)")
	u := os.Getenv("CHANGECAST_REDIS_URL")
	if u == "" {
		t.Fatal(`CHANGECAST_REDIS_URL is not set: run the tests with make test, or eval "$(scripts/redis.sh start)" first (go test -short skips this test)`)
	}
	return u
}

var prefixSeq atomic.Int64

// RedisPrefix is a key and channel prefix of the test's own on the Redis
// at url (pub/sub channels ignore logical databases, so a prefix is what
// keeps tests apart); its keys are deleted when the test ends.
func RedisPrefix(t testing.TB, url string) string {
	t.Helper()
	name := strings.NewReplacer("/", "_", " ", "_", ":", "_", "*", "_").Replace(t.Name())
	p := fmt.Sprintf("test:%s:%d:%d", name, os.Getpid(), prefixSeq.Add(1))
	t.Cleanup(func() {
		opt, err := redis.ParseURL(url)
		if err != nil {
			return
		}
		c := redis.NewClient(opt)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, p+":*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		for len(keys) > 0 {
			n := min(len(keys), 1000)
			c.Del(ctx, keys[:n]...)
			keys = keys[n:]
		}
	})
	return p
}
