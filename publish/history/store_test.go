package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/schema/wire"
)

// clock is a settable time for the stores' age limits.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type newStore func(t *testing.T, lim Limits, c *clock) Store

func TestMemory(t *testing.T) {
	testStore(t, func(t *testing.T, lim Limits, c *clock) Store {
		m := NewMemory(lim)
		m.now = c.now
		return m
	})
}

func TestRedis(t *testing.T) {
	url := testkit.Redis(t)
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(opt)
	t.Cleanup(func() { rc.Close() })
	testStore(t, func(t *testing.T, lim Limits, c *clock) Store {
		r := NewRedis(rc, testkit.RedisPrefix(t, url), lim)
		r.now = c.now
		return r
	})
	t.Run("FlushedIsANewEpoch", func(t *testing.T) {
		prefix := testkit.RedisPrefix(t, url)
		r := NewRedis(rc, prefix, Limits{})
		ctx := context.Background()
		e1 := appendN(t, r, "h/g/a", 3)
		for _, k := range r.keys("h/g/a") {
			rc.Del(ctx, k)
		}
		_, _, err := r.Read(ctx, "h/g/a", e1.Epoch, 1, 10)
		var rs *ResyncError
		if !errors.As(err, &rs) || rs.Epoch == e1.Epoch || rs.Epoch == "" {
			t.Fatalf("read after a flush: %v, want a resync to a new epoch", err)
		}
		e2, err := r.Append(ctx, "h/g/a", []byte(`{"hub":"h"`), []byte(`,"changes":[]}`))
		if err != nil || e2.Offset != 1 || e2.Epoch != rs.Epoch {
			t.Fatalf("append after a flush: %+v %v, want offset 1 in epoch %s", e2, err, rs.Epoch)
		}
	})
}

func appendN(t *testing.T, s Store, stream string, n int) Entry {
	t.Helper()
	var e Entry
	for i := range n {
		var err error
		e, err = s.Append(context.Background(), stream, []byte(`{"source":"t","hub":"h"`), []byte(fmt.Sprintf(`,"changes":[{"op":"upsert","collection":"c","id":"%d","v":"%d","doc":{}}]}`, i, i)))
		if err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func testStore(t *testing.T, mk newStore) {
	ctx := context.Background()
	t.Run("OffsetsPerStream", func(t *testing.T) {
		c := &clock{t: time.Now()}
		s := mk(t, Limits{}, c)
		epoch, last, err := s.Last(ctx, "h/g/a")
		if err != nil || epoch == "" || last != 0 {
			t.Fatalf("Last of a new stream: %q %d %v", epoch, last, err)
		}
		e := appendN(t, s, "h/g/a", 3)
		if e.Offset != 3 || e.Epoch != epoch {
			t.Fatalf("third append %+v, want offset 3 in the epoch Last gave (%s)", e, epoch)
		}
		if o := appendN(t, s, "h/g/b", 1); o.Offset != 1 {
			t.Fatalf("another stream starts at %d", o.Offset)
		}
		var env wire.Envelope
		if err := json.Unmarshal(e.Payload, &env); err != nil || env.Epoch != epoch || env.Offset != 3 || len(env.Changes) != 1 {
			t.Fatalf("payload %s: %+v %v", e.Payload, env, err)
		}
		if ep, last, _ := s.Last(ctx, "h/g/a"); ep != epoch || last != 3 {
			t.Fatalf("Last = %s %d", ep, last)
		}
	})
	t.Run("ReadAfter", func(t *testing.T) {
		c := &clock{t: time.Now()}
		s := mk(t, Limits{}, c)
		e := appendN(t, s, "h", 5)
		envs, more, err := s.Read(ctx, "h", e.Epoch, 1, 2)
		if err != nil || len(envs) != 2 || !more {
			t.Fatalf("read after 1, limit 2: %d %v %v", len(envs), more, err)
		}
		for i, b := range envs {
			var env wire.Envelope
			json.Unmarshal(b, &env)
			if env.Offset != uint64(i+2) {
				t.Fatalf("envelope %d has offset %d", i, env.Offset)
			}
		}
		if envs, more, err := s.Read(ctx, "h", e.Epoch, 3, 10); err != nil || len(envs) != 2 || more {
			t.Fatalf("read after 3: %d %v %v", len(envs), more, err)
		}
		if envs, _, err := s.Read(ctx, "h", e.Epoch, 5, 10); err != nil || len(envs) != 0 {
			t.Fatalf("read at the end: %d %v", len(envs), err)
		}
	})
	t.Run("Resync", func(t *testing.T) {
		c := &clock{t: time.Now()}
		s := mk(t, Limits{MaxMessages: 3, MaxAge: time.Minute}, c)
		e := appendN(t, s, "h/u/x", 5)
		for _, tc := range []struct {
			name  string
			epoch string
			after uint64
		}{{"another epoch", "other", 4}, {"ahead of the stream", e.Epoch, 9}, {"trimmed by count", e.Epoch, 1}} {
			_, _, err := s.Read(ctx, "h/u/x", tc.epoch, tc.after, 10)
			var rs *ResyncError
			if !errors.As(err, &rs) || rs.Epoch != e.Epoch {
				t.Errorf("%s: %v, want a resync naming epoch %s", tc.name, err, e.Epoch)
			}
		}
		if envs, _, err := s.Read(ctx, "h/u/x", e.Epoch, 2, 10); err != nil || len(envs) != 3 {
			t.Fatalf("read within what is kept: %d %v", len(envs), err)
		}
		c.add(2 * time.Minute)
		appendN(t, s, "h/u/x", 1) // trims what is older than MaxAge
		if _, _, err := s.Read(ctx, "h/u/x", e.Epoch, 4, 10); !IsResync(err) {
			t.Fatalf("read of aged-out envelopes: %v, want a resync", err)
		}
		if envs, _, err := s.Read(ctx, "h/u/x", e.Epoch, 5, 10); err != nil || len(envs) != 1 {
			t.Fatalf("read of the fresh envelope: %d %v", len(envs), err)
		}
	})
	t.Run("Renew", func(t *testing.T) {
		c := &clock{t: time.Now()}
		s := mk(t, Limits{}, c)
		old := map[string]Entry{}
		for _, st := range []string{"h/g/a", "h/u/x", "h"} {
			old[st] = appendN(t, s, st, 2)
		}
		names, err := s.(Renewer).Renew(ctx)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(names)
		if strings.Join(names, " ") != "h h/g/a h/u/x" {
			t.Fatalf("Renew returned %q, want every stream", names)
		}
		for st, e := range old {
			// A client catching up with the old epoch is told to reload.
			if _, _, err := s.Read(ctx, st, e.Epoch, 2, 10); !IsResync(err) {
				t.Errorf("%s: read with the old epoch after Renew: %v, want a resync", st, err)
			}
			n := appendN(t, s, st, 1)
			if n.Epoch == e.Epoch || n.Offset != 1 {
				t.Errorf("%s: append after Renew %+v, want offset 1 of a new epoch (not %s)", st, n, e.Epoch)
			}
		}
	})
}

// TestPublisherAppendsOnce: a batch is appended once, before it is sent;
// a retry sends the same offset; a failed append sends nothing.
func TestPublisherAppendsOnce(t *testing.T) {
	m := NewMemory(Limits{})
	var sent []string
	fail := 1
	next := publish.PublisherFunc(func(ctx context.Context, b *publish.Batch) error {
		sent = append(sent, string(b.Payload))
		if fail > 0 {
			fail--
			return publish.Retryable(errors.New("503"), 0)
		}
		return nil
	})
	p := NewPublisher(m, next)
	b := publish.BuildBatch("src", publish.Audience{Hub: "h", Group: "g"}, []publish.Pending{{Out: &publish.Output{Raw: []byte(`{"op":"delete","collection":"c","id":"1","v":"1"}`)}}})
	if err := p.Publish(context.Background(), b); err == nil {
		t.Fatal("the first send should fail")
	}
	if err := p.Publish(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if len(sent) != 2 || sent[0] != sent[1] {
		t.Fatalf("sent %q", sent)
	}
	var env wire.Envelope
	if err := json.Unmarshal([]byte(sent[0]), &env); err != nil || env.Offset != 1 || env.Group != "g" || env.Epoch == "" {
		t.Fatalf("sent %s: %+v %v", sent[0], env, err)
	}
	if _, last, _ := m.Last(context.Background(), "h/g/g"); last != 1 {
		t.Fatalf("appended %d times, want once", last)
	}
}
