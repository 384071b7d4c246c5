package cosmos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/changecast/changecast/lease"
	"github.com/changecast/changecast/schema/template"
)

// FeedConfig configures how a container's change feed is read. Zero values
// take the documented defaults.
type FeedConfig struct {
	// Start is where a lease created now starts (ignored once leases
	// exist). Default now.
	Start Start
	// PollInterval is the sleep after an empty read; while pages hold
	// changes they are read back to back. Default 1 s.
	PollInterval time.Duration
	// MaxItems is the page size. Default 100.
	MaxItems int
	// DeleteField is a JSON Pointer to a soft-delete flag: a document where
	// it is true becomes a delete. Empty: none.
	DeleteField string
	// RoutingIndex keeps, per lease, the routing and key fields of every
	// document of its range (RouteFields), seeded by one read of the
	// range's feed when the lease starts, so a move or a soft delete
	// carries where the version clients hold went (route.go). Off, every
	// change is marked changefeed.Change.PrevUnknown. The worker turns it
	// on unless source.cosmos.routingIndex is false.
	RoutingIndex bool
	// RouteFields are the JSON Pointers the container's mappings route
	// and key by (their group/user template fields and key pointers).
	RouteFields []template.Pointer
	// MinBackoff and MaxBackoff bound the wait after a failed read (after
	// the SDK's own retries). Defaults 100 ms and 10 s.
	MinBackoff, MaxBackoff time.Duration
	// ErrorAfter: failed reads are logged at WARN, and at ERROR once they
	// have failed for this long. Default 2 minutes.
	ErrorAfter time.Duration
	Logger     *slog.Logger
}

// Defaults of FeedConfig.
const (
	DefaultPollInterval = time.Second
	DefaultMaxItems     = 100
)

func (c *FeedConfig) defaults() {
	if c.ErrorAfter <= 0 {
		c.ErrorAfter = 2 * time.Minute
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.MaxItems <= 0 {
		c.MaxItems = DefaultMaxItems
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Feed reads one container's change feed, one lease range at a time. It is
// safe for concurrent use; each lease gets its own Source.
type Feed struct {
	c       *azcosmos.ContainerClient
	rid     string
	pk      azcosmos.PartitionKeyDefinition
	cfg     FeedConfig
	dec     decoder
	metrics *Metrics
}

// NewFeed reads the container's properties (its resource id, which every
// continuation token is bound to) and returns a Feed. metrics may be nil.
func NewFeed(ctx context.Context, c *azcosmos.ContainerClient, cfg FeedConfig, metrics *Metrics) (*Feed, error) {
	cfg.defaults()
	f := &Feed{c: c, cfg: cfg, metrics: metrics, dec: decoder{collection: c.ID()}}
	if cfg.DeleteField != "" {
		p, err := template.ParsePointer(cfg.DeleteField)
		if err != nil {
			return nil, fmt.Errorf("cosmos: delete field: %w", err)
		}
		f.dec.deleteAt = p
	}
	resp, err := c.Read(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("cosmos: read container %s: %w", c.ID(), err)
	}
	if resp.ContainerProperties == nil || resp.ContainerProperties.ResourceID == "" {
		return nil, fmt.Errorf("cosmos: container %s has no resource id", c.ID())
	}
	f.rid = resp.ContainerProperties.ResourceID
	f.pk = resp.ContainerProperties.PartitionKeyDefinition
	return f, nil
}

// ResourceID is the container's _rid.
func (f *Feed) ResourceID() string { return f.rid }

// Ranges lists the container's feed ranges (one per physical partition, as
// the SDK last saw them: a split shows up only after a read hits it).
func (f *Feed) Ranges(ctx context.Context) ([]lease.FeedRange, error) {
	frs, err := f.c.ReadFeedRanges(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("cosmos: read feed ranges: %w", err)
	}
	out := make([]lease.FeedRange, len(frs))
	for i, r := range frs {
		out[i] = lease.FeedRange{Min: r.MinInclusive, Max: normMax(r.MaxExclusive)}
	}
	return out, nil
}

// Leases returns one new lease per current feed range under prefix, each
// with its continuation set to the configured start (see ContinuationAt).
// It is the lease.Bootstrapper of a Cosmos processor.
func (f *Feed) Leases(ctx context.Context, prefix string) ([]*lease.Lease, error) {
	rs, err := f.Ranges(ctx)
	if err != nil {
		return nil, err
	}
	var out []*lease.Lease
	for _, r := range rs {
		l := lease.ForRange(prefix, r.Min, r.Max)
		l.Mode = lease.ModeIncremental
		cont, err := f.ContinuationAt(ctx, r, f.cfg.Start)
		if err != nil {
			// "now" could not be resolved: the range resolves it at its
			// first read instead.
			f.cfg.Logger.Warn("cosmos: could not anchor the start position; the first read will", "range", l.Token, "err", err)
			now := etagNow
			cont = rangeToken(f.rid, r, &now, nil).String()
		}
		l.Continuation = cont
		out = append(out, l)
	}
	return out, nil
}

// ContinuationAt returns the continuation that starts range r at s: the
// beginning, a time (applied at the range's first read), or now. Now is
// resolved at once (a read with If-None-Match: * returns the current LSN),
// so that changes made between this call and the range's first read are
// not skipped, which is what happens when "now" is left to the first read
// (the .NET processor's issue 5268).
func (f *Feed) ContinuationAt(ctx context.Context, r lease.FeedRange, s Start) (string, error) {
	switch s.Kind {
	case StartBeginning:
		return rangeToken(f.rid, r, nil, nil).String(), nil
	case StartTime:
		t := s.Time
		return rangeToken(f.rid, r, nil, &t).String(), nil
	}
	now := etagNow
	opts := resume{etag: &now}.options(f.rid, r, 1)
	resp, err := f.c.ReadChangeFeed(ctx, &opts)
	if err != nil {
		return "", fmt.Errorf("cosmos: read the current position of [%s, %s): %w", r.Min, r.Max, err)
	}
	if _, err := parseToken(resp.ContinuationToken); err != nil {
		return "", err
	}
	return resp.ContinuationToken, nil
}

// Estimate returns how many changes (LSNs) of range r lie beyond the
// continuation cont, the way the .NET estimator does (cosmos.md §3.7): one
// read of at most one item from cont; lag is the session token's LSN minus
// the first item's _lsn minus one, or 0 when nothing is new. It costs one
// change feed request. known is false when the service gave no session
// token.
func (f *Feed) Estimate(ctx context.Context, cont string, r lease.FeedRange) (lag int64, known bool, err error) {
	rs, err := resumeFor(cont, r, f.rid, f.cfg.Start)
	if err != nil {
		return 0, false, err
	}
	opts := rs.options(f.rid, r, 1)
	resp, err := f.c.ReadChangeFeed(ctx, &opts)
	if err != nil {
		return 0, false, err
	}
	if resp.RawResponse == nil || resp.RawResponse.StatusCode == http.StatusNotModified || len(resp.Items) == 0 {
		return 0, true, nil
	}
	session, ok := sessionLSN(resp.RawResponse.Header.Get("x-ms-session-token"))
	if !ok {
		return 0, false, nil
	}
	var first struct {
		LSN int64 `json:"_lsn"`
	}
	if err := json.Unmarshal(resp.Items[0], &first); err != nil {
		return 0, false, nil
	}
	return max(0, session-(first.LSN-1)), true, nil
}

// isPermanent reports read errors that retrying the same read cannot fix.
func isPermanent(err error) bool {
	return errors.Is(err, azcosmos.ErrFeedRangeUnresolved)
}
