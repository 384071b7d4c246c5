package cosmos

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/changecast/changecast/lease"
)

// ResetCheckpoints rewrites the continuation of every lease under prefix so
// that its range is read again from s, and returns how many it reset. It is
// `changecast checkpoint reset`; running instances need not stop: the
// instance holding a lease finds at its next write that the lease changed,
// drops that lease's in-flight work (lease.LostError) and takes the lease
// again at its next balancing cycle, reading from the new continuation.
// A write that races with the holder's is retried on a fresh copy.
func ResetCheckpoints(ctx context.Context, store lease.Store, prefix string, feed *Feed, s Start) (int, error) {
	ls, err := store.List(ctx, prefix+lease.Separator)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, l := range ls {
		if l.Range.Partition != "" || l.Range.IsZero() {
			continue
		}
		cont, err := feed.ContinuationAt(ctx, l.Range, s)
		if err != nil {
			return n, err
		}
		id := l.ID
		for attempt := 0; ; attempt++ {
			_, err := store.Checkpoint(ctx, l, cont)
			if err == nil {
				n++
				break
			}
			if !lease.IsConflict(err) || attempt >= 10 {
				return n, fmt.Errorf("cosmos: reset %s: %w", id, err)
			}
			fresh, err := store.List(ctx, id)
			if err != nil {
				return n, err
			}
			l = nil
			for _, f := range fresh {
				if f.ID == id {
					l = f
				}
			}
			if l == nil {
				break // deleted meanwhile (a split): its children inherit
			}
		}
	}
	return n, nil
}

// Describe says in words where a stored continuation resumes: "lsn 42",
// "beginning", "from <time>", "now" (not yet resolved) or "start option"
// (empty: the configured start applies).
func Describe(cont string) string {
	if cont == "" {
		return "start option"
	}
	if strings.HasPrefix(cont, `"`) {
		if n, ok := etagLSN(cont); ok {
			return fmt.Sprintf("lsn %d", n)
		}
		return cont
	}
	t, err := parseToken(cont)
	if err != nil {
		return "invalid"
	}
	var parts []string
	for _, e := range t.Continuation {
		switch {
		case e.ETag == nil && t.StartFrom != nil:
			parts = append(parts, "from "+t.StartFrom.UTC().Format(time.RFC3339))
		case e.ETag == nil:
			parts = append(parts, "beginning")
		case *e.ETag == etagNow:
			parts = append(parts, "now")
		default:
			if n, ok := etagLSN(*e.ETag); ok {
				parts = append(parts, fmt.Sprintf("lsn %d", n))
			} else {
				parts = append(parts, *e.ETag)
			}
		}
	}
	return strings.Join(parts, ", ")
}
