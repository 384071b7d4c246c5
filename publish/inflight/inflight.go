package inflight

import (
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/changecast/changecast/publish/hub"
)

// DefaultPerCaller is the reads one caller may have in flight at once: a
// client reads a snapshot page after page, and catches up its few streams
// (a group, its user, the hub) in parallel.
const DefaultPerCaller = 8

// Limiter counts each caller's requests in flight. The zero value is not
// usable; call New.
type Limiter struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

// New returns a Limiter of max requests per caller (DefaultPerCaller when
// max <= 0).
func New(max int) *Limiter {
	if max <= 0 {
		max = DefaultPerCaller
	}
	return &Limiter{max: max, n: map[string]int{}}
}

// Acquire takes one of key's places: ok false when key has all of them in
// use. Call release once the request is answered.
func (l *Limiter) Acquire(key string) (release func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[key] >= l.max {
		return nil, false
	}
	l.n[key]++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.n[key]--; l.n[key] <= 0 {
			delete(l.n, key) // the map holds only callers with reads in flight
		}
	}, true
}

// Key names the caller of r: its user on its hub, or, for an anonymous
// caller (whose user id is new on every request), its address.
func Key(r *http.Request, c hub.Caller) string {
	if c.Anonymous {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		return "anonymous\x00" + host
	}
	return strings.ToLower(c.Hub) + "\x00" + c.User
}

// Refuse answers a caller over its limit: 429, retry in a second.
func Refuse(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Retry-After", "1")
	w.WriteHeader(http.StatusTooManyRequests)
	w.Write([]byte(`{"error":"too many reads in flight for this caller; retry"}` + "\n"))
}
