package hub

import (
	"sync"
	"time"
)

// logLimiter lets one log line per key through per period, and counts the
// ones it held back. Keys are error codes, a small fixed set, so its map
// stays small whatever callers send.
type logLimiter struct {
	every   time.Duration
	mu      sync.Mutex
	last    map[string]time.Time
	dropped map[string]int
}

func newLogLimiter(every time.Duration) *logLimiter {
	return &logLimiter{every: every, last: map[string]time.Time{}, dropped: map[string]int{}}
}

// allow reports whether a line for key may be logged at now, and how many
// were held back since the last one.
func (l *logLimiter) allow(key string, now time.Time) (ok bool, dropped int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if last, seen := l.last[key]; seen && now.Sub(last) < l.every {
		l.dropped[key]++
		return false, 0
	}
	l.last[key] = now
	dropped = l.dropped[key]
	delete(l.dropped, key)
	return true, dropped
}
