package cosmos_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/changefeed/cosmos"
	emulator "github.com/changecast/changecast/emulator/cosmos"
	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/lease"
)

// TestStartFromTime: a time start reaches the service as an HTTP date
// (GMT), which the emulator, like the service, requires: documents written
// before the start time are not delivered, those after are.
func TestStartFromTime(t *testing.T) {
	// The emulator's clock runs ahead by skew (within the auth window):
	// the old documents get an earlier _ts than the start, the new ones a
	// later one, without waiting for seconds to pass.
	var skew atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())).UTC() }
	w := newWorld(t, 2, emulator.WithClock(clock))
	w.writeMany("old", 10)
	skew.Add(int64(10 * time.Second))
	start := clock().Add(-5 * time.Second)
	w.mu.Lock()
	w.want = map[string]int{}
	w.mu.Unlock()
	w.writeMany("new", 10)
	cfg := w.config("t", lease.NewMemoryStore())
	cfg.Feed.Start = cosmos.Start{Kind: cosmos.StartTime, Time: start}
	w.start(cfg)
	w.waitDelivered()
	for _, r := range w.srv.Requests(emulator.KindChangeFeed) {
		if ims := r.Header.Get("If-Modified-Since"); ims != "" && !strings.HasSuffix(ims, " GMT") {
			t.Fatalf("If-Modified-Since %q is not an HTTP date in GMT", ims)
		}
	}
	docs, _ := w.rep.Snapshot()
	for k := range docs {
		if strings.HasPrefix(k, collName+"/old") {
			t.Fatalf("%s was written before the start time and delivered", k)
		}
	}
}

// TestRefusedReadIsFatal: a change feed read the service refuses (400) is
// a configuration problem: the runner stops with an error naming
// source.cosmos.startFrom instead of retrying forever.
func TestRefusedReadIsFatal(t *testing.T) {
	for _, tc := range []struct {
		indexed bool
		field   string
	}{{false, "source.cosmos.startFrom"}, {true, "source.cosmos.routingIndex"}} {
		t.Run(tc.field, func(t *testing.T) {
			// With the routing index on, the refused read is the seed's.
			w := newWorld(t, 1)
			w.srv.FailNext(1, http.StatusBadRequest, emulator.KindChangeFeed)
			cfg := w.config("f", lease.NewMemoryStore())
			cfg.Feed.RoutingIndex = tc.indexed
			r := cfg.runner(t)
			done := testkit.Go(t, func() error { return r.Run(context.Background()) })
			err := testkit.Recv(t, done, patience, "the runner to stop")
			var ce *cosmos.ConfigError
			if !changefeed.IsFatal(err) || !errors.As(err, &ce) || ce.Field != tc.field {
				t.Fatalf("Run = %v, want a fatal error naming %s", err, tc.field)
			}
		})
	}
}

// TestStartRetriesTheFeed: failures reaching the container and its
// partition key ranges at start (here 503s) are retried with
// backoff, not fatal; the runner is not ready meanwhile, logs once per
// window, and streams once the feed answers.
func TestStartRetriesTheFeed(t *testing.T) {
	w := newWorld(t, 1)
	w.srv.FailNext(3, http.StatusServiceUnavailable, emulator.KindContainer, emulator.KindPKRanges)
	var logs testkit.Buffer
	cfg := w.config("r", lease.NewMemoryStore())
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	r := cfg.runner(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := testkit.Go(t, func() error { return r.Run(ctx) })
	t.Cleanup(cancel)
	testkit.Until(t, patience, "a failed start to be logged", func() bool { return strings.Contains(logs.String(), "cannot reach the change feed") })
	if r.Ready() {
		t.Fatal("ready while the feed cannot be read")
	}
	testkit.Until(t, patience, "the runner to be ready once the feed answers", r.Ready)
	if n := strings.Count(logs.String(), "cannot reach the change feed"); n != 1 {
		t.Fatalf("%d log lines for one window of failures, want 1:\n%s", n, logs.String())
	}
	w.writeMany("d", 5)
	w.waitDelivered()
	cancel()
	if err := testkit.Recv(t, done, patience, "Run to return"); err != nil {
		t.Fatal(err)
	}
}
