package snapshot

import (
	"context"
	"sync"
	"time"
)

// A client reads a snapshot page after page, each request waiting for the
// previous answer (the cursor). Reading page k+1 while page k travels and
// is decoded overlaps the source's round trip (watermark, SELECT, stream
// wait) with the client's work: the snapshot of a large group then takes
// about as long as whichever side is slower, not both added.
//
// A prefetched page is exact as any page is (it was read and published up
// to its watermark before it is kept), only older when served, which the
// version rule covers: the client, connected before it asked for page 1,
// holds every change after the watermark. It is served once, to the same
// caller, and only within prefetchTTL; at most Config.Prefetch pages are
// read ahead at once, and pages nobody asks for are dropped.

const prefetchTTL = 30 * time.Second

type prefetched struct {
	done    chan struct{}
	created time.Time
	body    []byte
	n       int
	next    *cursor
	err     error
}

type prefetchCache struct {
	mu    sync.Mutex
	pages map[string]*prefetched
	now   func() time.Time
}

// take removes and returns the page kept under key, if it is fresh.
func (c *prefetchCache) take(key string) *prefetched {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pages[key]
	if p == nil {
		return nil
	}
	delete(c.pages, key)
	if c.now().Sub(p.created) > prefetchTTL {
		return nil
	}
	return p
}

// put keeps p under key unless max pages are kept already (after dropping
// stale ones); it reports whether it did.
func (c *prefetchCache) put(key string, p *prefetched, max int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.pages[key]; dup {
		return false
	}
	if len(c.pages) >= max {
		now := c.now()
		for k, q := range c.pages {
			select {
			case <-q.done:
				if now.Sub(q.created) > prefetchTTL {
					delete(c.pages, k)
				}
			default:
			}
		}
		if len(c.pages) >= max {
			return false
		}
	}
	c.pages[key] = p
	return true
}

// prefetch starts reading page p, unless the handler is closed, the page
// is being read already, or Config.Prefetch pages are kept.
func (h *Handler) prefetch(p pageRequest) {
	if h.cfg.Prefetch <= 0 || h.ctx.Err() != nil {
		return
	}
	f := &prefetched{done: make(chan struct{}), created: h.prefetched.now()}
	if !h.prefetched.put(p.key(), f, h.cfg.Prefetch) {
		return
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer close(f.done)
		ctx, cancel := context.WithTimeout(h.ctx, prefetchTTL)
		defer cancel()
		f.body, f.n, f.next, f.err = h.page(ctx, p)
	}()
}

// Close stops the pages being read ahead and waits for them. Call it when
// the endpoint is no longer served.
func (h *Handler) Close() {
	h.cancel()
	h.wg.Wait()
}
