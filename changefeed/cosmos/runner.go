package cosmos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/changecast/changecast/changefeed/processor"
	"github.com/changecast/changecast/lease"
	"github.com/changecast/changecast/publish"
)

// Config configures a Runner. Zero values take the documented defaults.
type Config struct {
	// Client is the account client; Database and Container name the
	// monitored container. Required.
	Client              *azcosmos.Client
	Database, Container string
	Feed                FeedConfig
	// Store keeps the leases. Required.
	Store lease.Store
	// Processor names the consumer group (lease.processor); the lease
	// prefix is the .NET processor's "{Processor}{host}_{dbRid}_{collRid}".
	// Default "changecast".
	Processor string
	// Owner, AcquireInterval, RenewInterval, Expiry and MaxLeases are
	// passed to the lease.Manager (defaults there).
	Owner                                  string
	AcquireInterval, RenewInterval, Expiry time.Duration
	MaxLeases                              int
	// Publisher receives the batches of every lease. Required; it must be
	// safe for concurrent use (leases publish in parallel).
	Publisher publish.Publisher
	// NewMapper returns a mapper for one lease (mappers are not safe for
	// concurrent use, so each lease gets its own). Required.
	NewMapper func() (*publish.Mapper, error)
	// Pipeline is the template of each lease's processor configuration.
	// Source defaults to "cosmos:{Database}/{Container}"; Logger to Logger.
	Pipeline processor.Config
	// Metrics may be nil.
	Metrics *Metrics
	Logger  *slog.Logger
}

// Runner is the change feed processor for one container: a lease.Manager
// over its feed ranges (bootstrapped with one lease per range), and for
// every lease this instance holds a processor (read, map, batch, publish)
// whose source checkpoints into the lease.
type Runner struct {
	cfg   Config
	log   *slog.Logger
	ready atomic.Bool

	mu      sync.Mutex
	sources map[string]*Source // by lease ID, while held
	prefix  string
}

// NewRunner validates cfg; Run starts the runner.
func NewRunner(cfg Config) (*Runner, error) {
	if cfg.Client == nil || cfg.Database == "" || cfg.Container == "" || cfg.Store == nil || cfg.Publisher == nil || cfg.NewMapper == nil {
		return nil, errors.New("cosmos: Config needs Client, Database, Container, Store, Publisher and NewMapper")
	}
	if cfg.Processor == "" {
		cfg.Processor = "changecast"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Feed.Logger == nil {
		cfg.Feed.Logger = cfg.Logger
	}
	if cfg.Pipeline.Source == "" {
		cfg.Pipeline.Source = "cosmos:" + cfg.Database + "/" + cfg.Container
	}
	if cfg.Pipeline.Logger == nil {
		cfg.Pipeline.Logger = cfg.Logger
	}
	return &Runner{cfg: cfg, log: cfg.Logger, sources: map[string]*Source{}}, nil
}

// Ready reports whether the runner reached the container and runs its
// lease manager.
func (r *Runner) Ready() bool { return r.ready.Load() }

// Run blocks until ctx ends, then stops every lease's processor (each
// drains, checkpoints and releases its lease) and returns nil. It returns
// an error if the container cannot be read at start (one that does not
// exist yet is waited for).
func (r *Runner) Run(ctx context.Context) error {
	c, err := r.cfg.Client.NewContainer(r.cfg.Database, r.cfg.Container)
	if err != nil {
		return err
	}
	// A container that does not exist yet is waited for (changecast may be
	// deployed before the application creates it); other errors stop.
	var (
		feed    *Feed
		prefix  string
		backoff = time.Second
		logged  time.Time
	)
	for {
		feed, err = NewFeed(ctx, c, r.cfg.Feed, r.cfg.Metrics)
		if err == nil {
			prefix, err = LeasePrefix(ctx, r.cfg.Client, r.cfg.Database, feed, r.cfg.Processor)
		}
		var re *azcore.ResponseError
		if err == nil || !errors.As(err, &re) || re.StatusCode != http.StatusNotFound {
			break
		}
		if time.Since(logged) > 30*time.Second {
			r.log.Warn("cosmos: waiting for the container to exist", "container", r.cfg.Database+"/"+r.cfg.Container, "err", err)
			logged = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.prefix = prefix
	r.mu.Unlock()
	m, err := lease.NewManager(lease.Config{
		Store:     r.cfg.Store,
		Prefix:    prefix,
		Owner:     r.cfg.Owner,
		Bootstrap: func(ctx context.Context) ([]*lease.Lease, error) { return feed.Leases(ctx, prefix) },
		Worker: lease.WorkerFunc(func(ctx context.Context, l *lease.Lease, cp lease.Checkpointer) error {
			return r.work(ctx, feed, l, cp)
		}),
		AcquireInterval: r.cfg.AcquireInterval,
		RenewInterval:   r.cfg.RenewInterval,
		Expiry:          r.cfg.Expiry,
		MaxLeases:       r.cfg.MaxLeases,
		Logger:          r.log,
	})
	if err != nil {
		return err
	}
	r.log.Info("cosmos: change feed processor starting", "container", r.cfg.Database+"/"+r.cfg.Container,
		"leases", prefix+lease.Separator, "owner", m.Owner(), "start", feed.cfg.Start.String())
	r.ready.Store(true)
	defer r.ready.Store(false)
	return m.Run(ctx)
}

// work is the lease.Worker: one processor per held lease.
func (r *Runner) work(ctx context.Context, feed *Feed, l *lease.Lease, cp lease.Checkpointer) error {
	mapper, err := r.cfg.NewMapper()
	if err != nil {
		return err
	}
	src := feed.Source(l, cp)
	r.mu.Lock()
	r.sources[l.ID] = src
	r.mu.Unlock()
	r.cfg.Metrics.hold(l.Token)
	defer func() {
		r.mu.Lock()
		delete(r.sources, l.ID)
		r.mu.Unlock()
		r.cfg.Metrics.drop(l.Token)
	}()
	pc := r.cfg.Pipeline
	pc.Logger = pc.Logger.With("lease", l.Token)
	err = processor.New(pc, src, mapper, r.cfg.Publisher).Run(ctx)
	var split *lease.SplitError
	if err != nil && !errors.As(err, &split) {
		r.log.Error("cosmos: lease processor failed; the lease is released and retried from its checkpoint", "lease", l.Token, "err", err)
	}
	return err
}

// LeaseState is a held lease as the runner sees it.
type LeaseState struct {
	ID, Token string
	Range     lease.FeedRange
	// Lag is Source.Lag; LagKnown is false until the first read and
	// checkpoint.
	Lag      int64
	LagKnown bool
}

// Leases returns the leases this instance reads now, by ID.
func (r *Runner) Leases() []LeaseState {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]LeaseState, 0, len(r.sources))
	for id, s := range r.sources {
		lag, ok := s.Lag()
		out = append(out, LeaseState{ID: id, Token: s.l.Token, Range: s.l.Range, Lag: lag, LagKnown: ok})
	}
	slices.SortFunc(out, func(a, b LeaseState) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Prefix is the lease prefix, once Run has resolved it.
func (r *Runner) Prefix() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.prefix
}

// LeasePrefix returns the lease prefix of processor on feed's container, in
// the .NET and Java processors' form "{processor}{accountHost}_{dbRid}_{collRid}"
// (their lease ids are prefix + ".." + token). The container's resource id
// in it means a dropped and re-created container gets new leases instead of
// continuations that no longer apply.
func LeasePrefix(ctx context.Context, client *azcosmos.Client, database string, feed *Feed, processor string) (string, error) {
	db, err := client.NewDatabase(database)
	if err != nil {
		return "", err
	}
	resp, err := db.Read(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("cosmos: read database %s: %w", database, err)
	}
	if resp.DatabaseProperties == nil || resp.DatabaseProperties.ResourceID == "" {
		return "", fmt.Errorf("cosmos: database %s has no resource id", database)
	}
	host := client.Endpoint()
	if u, err := url.Parse(host); err == nil && u.Hostname() != "" {
		host = u.Hostname()
	}
	// Cosmos ids may not contain '/': keep base64 resource ids usable.
	clean := strings.NewReplacer("/", "-", "\\", "-", "?", "-", "#", "-")
	return processor + host + "_" + clean.Replace(resp.DatabaseProperties.ResourceID) + "_" + clean.Replace(feed.ResourceID()), nil
}
