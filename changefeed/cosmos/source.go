package cosmos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/lease"
)

// Source reads the feed range of one lease. It implements
// changefeed.Source; Checkpoint goes through the lease's Checkpointer, so a
// position is stored in the lease document only after the pipeline has
// published everything up to it.
type Source struct {
	f   *Feed
	l   *lease.Lease
	cp  lease.Checkpointer
	log *slog.Logger

	session    atomic.Int64 // last x-ms-session-token LSN; -1 unknown
	checkpoint atomic.Int64 // LSN of the last stored position; -1 unknown
}

// Source returns the source of lease l, checkpointing through cp.
func (f *Feed) Source(l *lease.Lease, cp lease.Checkpointer) *Source {
	s := &Source{f: f, l: l.Clone(), cp: cp, log: f.cfg.Logger.With("lease", l.Token)}
	s.session.Store(-1)
	s.checkpoint.Store(-1)
	if n, ok := tokenLSN(l.Continuation); ok && l.Continuation != "" {
		s.checkpoint.Store(n)
	}
	return s
}

// Lag is the number of LSNs between the last stored position and the last
// LSN the service reported for the range (x-ms-session-token), the .NET
// estimator's measure: about the number of changes not yet delivered. ok is
// false until both are known.
func (s *Source) Lag() (lag int64, ok bool) {
	sess, cp := s.session.Load(), s.checkpoint.Load()
	if sess < 0 || cp < 0 {
		return 0, false
	}
	return max(0, sess-cp), true
}

// Checkpoint stores pos in the lease. An error for which lease.IsLost is
// true means the lease is gone to another instance.
func (s *Source) Checkpoint(ctx context.Context, pos changefeed.Position) error {
	if err := s.cp.Checkpoint(ctx, string(pos)); err != nil {
		return err
	}
	if n, ok := tokenLSN(string(pos)); ok {
		s.checkpoint.Store(n)
		s.f.metrics.setLag(s)
	}
	return nil
}

// Run reads the lease's range until ctx ends (it returns nil) or the range
// splits (it returns a *lease.SplitError naming the children, which inherit
// the lease's last checkpoint). Failed reads are retried with backoff; only
// a range that no longer maps to the container ends Run with an error.
//
// Pages are read back to back while they hold changes; after an empty read
// (304) Run sleeps the poll interval. Every change carries no position
// except the last of its page, which carries the token after the page, so a
// checkpoint never passes a change that was not published. After an empty
// read that moved the token (a "now" resolved to an LSN, deletes that
// advanced it) Run emits a position alone, so the lease records it.
func (s *Source) Run(ctx context.Context, out chan<- changefeed.Event) error {
	s.f.metrics.hold(s.l.Token)
	defer s.f.metrics.drop(s.l.Token)
	rs, err := resumeFor(s.l.Continuation, s.l.Range, s.f.rid, s.f.cfg.Start)
	if err != nil {
		return err
	}
	opts := rs.options(s.f.rid, s.l.Range, s.f.cfg.MaxItems)
	// prev gives each change where the version clients hold went (see
	// route.go): the routing index, seeded before the first read, or,
	// with the index off, "unknown" for every change.
	prev, follow := unknownAll, func(*changefeed.Change) {}
	var index *routeIndex
	if s.f.cfg.RoutingIndex {
		x, err := s.seedRetrying(ctx)
		if x == nil {
			return err // nil: ctx ended
		}
		index, prev, follow = x, x.before, x.follow
		s.f.metrics.indexed(s.l.Token, len(x.docs))
	}
	emitted := s.l.Continuation
	backoff := s.f.cfg.MinBackoff
	failures := 0
	var failingSince time.Time
	loud := false // logged at ERROR in this failure
	// While a page's items are decoded and handed on, the next page is
	// already being read (profiling: decoding sat between reads, and the
	// read loop ran at 0.87 of a bare azcosmos loop). At most one read is
	// ahead; every return waits for it.
	var ahead chan readResult
	defer func() {
		if ahead != nil {
			<-ahead
		}
	}()
	for {
		if ctx.Err() != nil {
			return nil
		}
		var resp azcosmos.ChangeFeedResponse
		var err error
		if ahead != nil {
			r := <-ahead
			ahead = nil
			resp, err = r.resp, r.err
		} else {
			rctx, ropts := readContext(ctx, opts)
			resp, err = s.f.c.ReadChangeFeed(rctx, &ropts)
		}
		if ctx.Err() != nil {
			return nil
		}
		if resp.RawResponse != nil {
			s.observe(resp)
		}
		// A read that failed part way may still carry a token showing a
		// split (410 retries exhausted after expanding the range).
		if t, terr := parseToken(resp.ContinuationToken); terr == nil && len(t.Continuation) > 1 {
			return s.split(t)
		}
		if err != nil {
			if isPermanent(err) {
				return err
			}
			if statusOf(err) == http.StatusBadRequest {
				// The service refuses the read itself: the request is
				// wrong, and sending it again cannot help.
				return &ConfigError{Field: "source.cosmos.startFrom", Err: fmt.Errorf("the change feed read of lease %s was refused: %w", s.l.Token, err)}
			}
			s.f.metrics.read("error")
			failures++
			if failures == 1 {
				failingSince = time.Now()
			}
			// At WARN, and at ERROR once it has lasted ErrorAfter: an
			// operator pages on a feed that stays unreadable, not on a blip.
			if failing := time.Since(failingSince); failures == 1 || failures%20 == 0 || !loud && failing >= s.f.cfg.ErrorAfter {
				lvl := slog.LevelWarn
				if failing >= s.f.cfg.ErrorAfter {
					lvl, loud = slog.LevelError, true
				}
				s.log.Log(ctx, lvl, "cosmos: change feed read failed; retrying", "attempt", failures,
					"failing_for", failing.Round(time.Second).String(), "wait", backoff.String(), "status", statusOf(err), "err", err)
			}
			if !sleep(ctx, backoff/2+rand.N(backoff/2+1)) {
				return nil
			}
			backoff = min(backoff*2, s.f.cfg.MaxBackoff)
			continue
		}
		if failures > 0 {
			s.log.Info("cosmos: change feed reads recovered", "failed", failures)
		}
		failures, backoff, loud = 0, s.f.cfg.MinBackoff, false
		tok := resp.ContinuationToken
		// From here on the token drives every read; StartFrom and the
		// crafted first token are never sent again.
		opts = azcosmos.ChangeFeedOptions{MaxItemCount: int32(s.f.cfg.MaxItems), Continuation: &tok}

		if len(resp.Items) == 0 {
			s.f.metrics.read("empty")
			if tok != emitted && resolved(tok) {
				if !send(ctx, out, changefeed.Event{Position: changefeed.Position(tok)}) {
					return nil
				}
				emitted = tok
			}
			if !sleep(ctx, s.f.cfg.PollInterval) {
				return nil
			}
			continue
		}
		s.f.metrics.read("page")
		ahead = make(chan readResult, 1)
		go func(opts azcosmos.ChangeFeedOptions) {
			r, err := s.f.c.ReadChangeFeed(ctx, &opts)
			ahead <- readResult{r, err}
		}(opts)
		// Let the read go out before decoding: with one P (GOMAXPROCS=1)
		// it would otherwise wait for the whole page.
		runtime.Gosched()
		for i, item := range resp.Items {
			ev := changefeed.Event{Change: s.f.dec.decode(item)}
			// Before the send: the change then belongs to the pipeline.
			prev(ev.Change)
			follow(ev.Change)
			if i == len(resp.Items)-1 {
				ev.Position = changefeed.Position(tok)
			}
			if !send(ctx, out, ev) {
				return nil
			}
		}
		if index != nil {
			s.f.metrics.indexed(s.l.Token, len(index.docs))
		}
		emitted = tok
	}
}

// seedRetrying seeds the routing index, retrying failed reads with backoff
// as the stream does. A nil index with a nil error: ctx ended first.
func (s *Source) seedRetrying(ctx context.Context) (*routeIndex, error) {
	backoff := s.f.cfg.MinBackoff
	for attempt := 1; ; attempt++ {
		x, err := s.seed(ctx)
		if err == nil {
			return x, nil
		}
		if ctx.Err() != nil {
			return nil, nil
		}
		if isPermanent(err) {
			// The range no longer maps to the container (it split): the
			// stream's first read reports it. Until then nothing is
			// known.
			return &routeIndex{blind: true}, nil
		}
		if statusOf(err) == http.StatusBadRequest {
			// The service refuses a plain read of the range from the
			// beginning: sending it again cannot help.
			return nil, &ConfigError{Field: "source.cosmos.routingIndex", Err: fmt.Errorf("the seed read of lease %s was refused (false turns the index off): %w", s.l.Token, err)}
		}
		if attempt == 1 || attempt%20 == 0 {
			s.log.Warn("cosmos: routing index seed failed; retrying", "attempt", attempt, "wait", backoff, "err", err)
		}
		if !sleep(ctx, backoff/2+rand.N(backoff/2+1)) {
			return nil, nil
		}
		backoff = min(backoff*2, s.f.cfg.MaxBackoff)
	}
}

// readResult is a change feed read done ahead.
type readResult struct {
	resp azcosmos.ChangeFeedResponse
	err  error
}

// readContext moves a time start out of opts into the request's
// If-Modified-Since header, written as an HTTP date in GMT (RFC 9110): azcosmos
// v1.5.0 formats StartFrom with time.RFC1123 after UTC(), which writes "UTC"
// instead of "GMT", a form only lenient parsers accept.
func readContext(ctx context.Context, opts azcosmos.ChangeFeedOptions) (context.Context, azcosmos.ChangeFeedOptions) {
	if opts.StartFrom == nil {
		return ctx, opts
	}
	since := opts.StartFrom.UTC().Format(http.TimeFormat)
	opts.StartFrom = nil
	return policy.WithHTTPHeader(ctx, http.Header{"If-Modified-Since": {since}}), opts
}

// ConfigError is a setting the service refuses (a change feed read answered
// 400): retrying cannot fix it, so it stops the worker (changefeed.IsFatal)
// and names the field to look at.
type ConfigError struct {
	Field string
	Err   error
}

func (e *ConfigError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Fatal marks the error for changefeed.IsFatal.
func (e *ConfigError) Fatal() bool { return true }

// split ends the lease: the page that revealed the split is dropped, and
// each child starts from the lease's last checkpoint (the Manager copies it),
// so nothing read past it is lost.
func (s *Source) split(t token) error {
	s.f.metrics.split()
	children := make([]*lease.Lease, 0, len(t.Continuation))
	for _, e := range t.Continuation {
		c := lease.ForRange(s.l.Prefix(), e.Min, normMax(e.Max))
		c.Mode = lease.ModeIncremental
		children = append(children, c)
	}
	s.log.Info("cosmos: feed range split", "children", len(children))
	return &lease.SplitError{Children: children}
}

func (s *Source) observe(resp azcosmos.ChangeFeedResponse) {
	s.f.metrics.charge(resp.RequestCharge)
	if n, ok := sessionLSN(resp.RawResponse.Header.Get("x-ms-session-token")); ok {
		s.session.Store(n)
		s.f.metrics.setLag(s)
	}
}

// resolved reports whether a token names concrete positions only (no "*"
// left), so storing it cannot skip anything on a restart.
func resolved(tok string) bool {
	t, err := parseToken(tok)
	if err != nil {
		return false
	}
	for _, e := range t.Continuation {
		if e.ETag != nil && *e.ETag == etagNow {
			return false
		}
	}
	return true
}

func send(ctx context.Context, out chan<- changefeed.Event, ev changefeed.Event) bool {
	select {
	case out <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func statusOf(err error) int {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}
