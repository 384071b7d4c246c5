package changefeed

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/changecast/changecast/lease"
)

// Partitions is a change feed split into leased parts: a Cosmos DB
// container's feed ranges, or a PostgreSQL slot (one part). A Runner runs it.
type Partitions interface {
	// Open reaches the feed and returns the lease prefix of this
	// processor (the lease ids are prefix + lease.Separator + token). The
	// Runner retries it with backoff until it succeeds, ctx ends, or the
	// error is fatal (IsFatal).
	Open(ctx context.Context) (prefix string, err error)
	// Bootstrap lists the leases the first instance of a processor
	// creates, unowned and without continuations.
	Bootstrap(ctx context.Context, prefix string) ([]*lease.Lease, error)
	// Source returns the source of lease l; it checkpoints through cp.
	Source(l *lease.Lease, cp lease.Checkpointer) (Source, error)
}

// RunnerConfig configures a Runner. Zero values take the documented
// defaults.
type RunnerConfig struct {
	// Partitions is the feed. Required.
	Partitions Partitions
	// Store keeps the leases. Required (lease.NewMemoryStore for one
	// instance).
	Store lease.Store
	// NewConsumer returns the consumer of one lease's changes (each lease
	// gets its own: consumers are single-stream). Required.
	NewConsumer func(l *lease.Lease) (Consumer, error)
	// Processor configures each lease's Processor.
	Processor ProcessorConfig
	// Owner, AcquireInterval, RenewInterval, Expiry and MaxLeases are
	// passed to the lease.Manager (defaults there).
	Owner                                  string
	AcquireInterval, RenewInterval, Expiry time.Duration
	MaxLeases                              int
	// IdleReady makes Ready true while this instance holds no lease (a
	// Cosmos instance with more instances than ranges is still healthy);
	// without it an instance is ready only while it streams (a PostgreSQL
	// standby is not).
	IdleReady bool
	Logger    *slog.Logger
}

// Runner is the lease-coordinated processor of one feed: a lease.Manager
// over its partitions and, for every lease this instance holds, a Processor
// whose source checkpoints into the lease. Instances sharing a lease store
// share the partitions.
type Runner struct {
	cfg RunnerConfig
	log *slog.Logger
	mgr atomic.Pointer[lease.Manager] // while Run runs its manager

	mu      sync.Mutex
	prefix  string
	running map[string]*running // by lease ID
	fatal   error
}

type running struct {
	l   *lease.Lease
	src Source
}

// NewRunner checks cfg; Run starts the runner.
func NewRunner(cfg RunnerConfig) (*Runner, error) {
	if cfg.Partitions == nil || cfg.Store == nil || cfg.NewConsumer == nil {
		return nil, errors.New("changefeed: RunnerConfig needs Partitions, Store and NewConsumer")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Processor.Logger == nil {
		cfg.Processor.Logger = cfg.Logger
	}
	return &Runner{cfg: cfg, log: cfg.Logger, running: map[string]*running{}}, nil
}

// Fatal marks an error that retrying cannot fix (a configuration or server
// setting): a source returning one stops its Runner, which returns it.
type Fatal interface{ Fatal() bool }

// IsFatal reports whether err is fatal.
func IsFatal(err error) bool {
	var f Fatal
	return errors.As(err, &f) && f.Fatal()
}

// Run blocks until ctx ends, then stops every lease's processor (each
// drains, checkpoints and releases its lease) and returns nil; or until a
// source fails with a fatal error, which it returns.
func (r *Runner) Run(ctx context.Context) error {
	prefix, err := r.open(ctx)
	if err != nil || ctx.Err() != nil {
		return err
	}
	r.mu.Lock()
	r.prefix = prefix
	r.mu.Unlock()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	m, err := lease.NewManager(lease.Config{
		Store:  r.cfg.Store,
		Prefix: prefix,
		Owner:  r.cfg.Owner,
		Bootstrap: func(ctx context.Context) ([]*lease.Lease, error) {
			return r.cfg.Partitions.Bootstrap(ctx, prefix)
		},
		Worker: lease.WorkerFunc(func(ctx context.Context, l *lease.Lease, cp lease.Checkpointer) error {
			err := r.work(ctx, l, cp)
			if IsFatal(err) {
				// A configuration problem: every instance would hit it.
				r.mu.Lock()
				r.fatal = err
				r.mu.Unlock()
				stop()
			}
			return err
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
	r.log.Info("change feed processor starting", "leases", prefix+lease.Separator, "owner", m.Owner())
	r.mgr.Store(m)
	defer r.mgr.Store(nil)
	err = m.Run(runCtx)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fatal != nil {
		return r.fatal
	}
	return err
}

// open calls Partitions.Open until it succeeds, retrying with backoff and
// logging once per 30 s window; a fatal error ends it.
func (r *Runner) open(ctx context.Context) (string, error) {
	backoff := 500 * time.Millisecond
	var logged time.Time
	for {
		prefix, err := r.cfg.Partitions.Open(ctx)
		if err == nil || IsFatal(err) || ctx.Err() != nil {
			return prefix, err
		}
		if time.Since(logged) > 30*time.Second {
			r.log.Warn("cannot reach the change feed yet; retrying", "err", err)
			logged = time.Now()
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", nil
		case <-t.C:
		}
		// Opening is one cheap read: retried often enough that a source
		// waiting for something to appear (a Cosmos container) notices soon.
		backoff = min(backoff*2, 5*time.Second)
	}
}

// work is the lease.Worker: one processor per held lease.
func (r *Runner) work(ctx context.Context, l *lease.Lease, cp lease.Checkpointer) error {
	src, err := r.cfg.Partitions.Source(l, cp)
	if err != nil {
		return err
	}
	con, err := r.cfg.NewConsumer(l)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.running[l.ID] = &running{l: l.Clone(), src: src}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.running, l.ID)
		r.mu.Unlock()
	}()
	pc := r.cfg.Processor
	pc.Logger = pc.Logger.With("lease", l.Token)
	err = NewProcessor(pc, src, con).Run(ctx)
	var split *lease.SplitError
	if err != nil && !errors.As(err, &split) && !IsFatal(err) {
		// The lease manager logs the one ERROR line as it releases it.
		r.log.Debug("lease processor failed; the lease is released and retried from its checkpoint", "lease", l.Token, "err", err)
	}
	return err
}

// Ready reports whether the runner reached its feed, its leases exist and
// it took its share of them, and every source it runs that can tell (a
// Ready() bool method) is streaming. Without RunnerConfig.IdleReady it
// also needs a lease.
func (r *Runner) Ready() bool {
	if m := r.mgr.Load(); m == nil || !m.Balanced() {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.running) == 0 {
		return r.cfg.IdleReady
	}
	for _, x := range r.running {
		if rd, ok := x.src.(interface{ Ready() bool }); ok && !rd.Ready() {
			return false
		}
	}
	return true
}

// Prefix is the lease prefix, once Run has opened the feed.
func (r *Runner) Prefix() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.prefix
}

// Held is a lease this instance reads now.
type Held struct {
	Lease  *lease.Lease // as it was when its worker started
	Source Source
}

// Leases returns the leases this instance reads now, by ID.
func (r *Runner) Leases() []Held {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Held, 0, len(r.running))
	for _, x := range r.running {
		out = append(out, Held{Lease: x.l, Source: x.src})
	}
	slices.SortFunc(out, func(a, b Held) int { return strings.Compare(a.Lease.ID, b.Lease.ID) })
	return out
}
