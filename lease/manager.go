package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	mathrand "math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Worker processes the feed range of one lease while this instance holds it.
type Worker interface {
	// Work reads l's range from l.Continuation (or the source's start
	// position when it is empty) and calls cp.Checkpoint after what it read
	// has been fully handled. It must return promptly once ctx is done.
	//
	// context.Cause(ctx) says why ctx ended: ErrShutdown on a graceful stop
	// (the worker may still checkpoint finished work, with a context of its
	// own, before returning), or an error for which IsLost is true when the
	// lease was lost (cp then refuses every checkpoint: drop in-flight work).
	//
	// Returning a *SplitError hands the range over to its children. Any
	// other return releases the lease; it is taken again, by this instance
	// or another, at a later balancing cycle and resumes from the last
	// checkpoint, which is the retry (and backoff) for a failed worker.
	Work(ctx context.Context, l *Lease, cp Checkpointer) error
}

// WorkerFunc adapts a function to Worker.
type WorkerFunc func(ctx context.Context, l *Lease, cp Checkpointer) error

// Work calls f.
func (f WorkerFunc) Work(ctx context.Context, l *Lease, cp Checkpointer) error { return f(ctx, l, cp) }

// Checkpointer records a worker's progress in its lease.
type Checkpointer interface {
	// Checkpoint stores continuation as the lease's resume point (a
	// compare-and-set that also renews the lease). It returns an error for
	// which IsLost is true if the lease is no longer this instance's; the
	// worker's context is then cancelled too. Other errors leave the lease
	// held and may be retried.
	Checkpoint(ctx context.Context, continuation string) error
}

// Bootstrapper returns the initial leases of a processor: one per feed range
// (Cosmos) or one for the slot (PostgreSQL), unowned, with an empty
// Continuation so that the source's start position applies. An empty ID is
// derived from Config.Prefix and Token.
type Bootstrapper func(ctx context.Context) ([]*Lease, error)

// Config configures a Manager. Zero values take the documented defaults.
type Config struct {
	// Store holds the leases. Required.
	Store Store
	// Prefix names the processor (one processor = one consumer group);
	// its leases have IDs Prefix+Separator+Token. Required.
	Prefix string
	// Owner names this instance in Lease.Owner. It must be unique among
	// the instances sharing Store. A stable name (a pod name) lets a
	// restarted instance take back its leases at once instead of after the
	// expiry. Default: host name plus a random suffix.
	Owner string
	// Worker processes each acquired lease. Required.
	Worker Worker
	// Bootstrap, if set, creates the initial leases the first time a
	// processor runs; see Manager.Run.
	Bootstrap Bootstrapper
	// AcquireInterval is the period of the balancing loop. Default 13 s.
	AcquireInterval time.Duration
	// RenewInterval is the period of lease renewals. Default 17 s.
	RenewInterval time.Duration
	// Expiry is how long a lease stays owned without renewal. Must exceed
	// RenewInterval. Default 60 s.
	Expiry time.Duration
	// MaxLeases caps how many leases this instance takes; 0 means no cap.
	MaxLeases int
	// Logger receives lease events; nil discards them.
	Logger *slog.Logger
}

func (c *Config) applyDefaults() error {
	if c.Store == nil || c.Worker == nil || c.Prefix == "" {
		return errors.New("lease: Config needs Store, Worker and Prefix")
	}
	if c.Owner == "" {
		c.Owner = defaultOwner()
	}
	if c.AcquireInterval <= 0 {
		c.AcquireInterval = DefaultAcquireInterval
	}
	if c.RenewInterval <= 0 {
		c.RenewInterval = DefaultRenewInterval
	}
	if c.Expiry <= 0 {
		c.Expiry = DefaultExpiry
	}
	if c.RenewInterval >= c.Expiry {
		return fmt.Errorf("lease: RenewInterval %v must be shorter than Expiry %v", c.RenewInterval, c.Expiry)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func defaultOwner() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "changecast"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// Manager runs the leases of one processor on this instance: it bootstraps
// them, takes its fair share, renews what it holds, runs a Worker per held
// lease, and hands them back on shutdown. See the package documentation.
type Manager struct {
	cfg   Config
	log   *slog.Logger
	rnd   *mathrand.Rand // used by the Run goroutine only
	epoch time.Time      // monotonic origin of held.renewed
	base  context.Context
	ran   atomic.Bool
	// balanced is set once the leases exist and a first balancing cycle
	// has run (see Balanced).
	balanced atomic.Bool

	mu       sync.Mutex
	held     map[string]*held
	stopping bool
	stop     chan struct{}
	wg       sync.WaitGroup
}

// NewManager validates cfg and returns a Manager; nothing runs until Run.
func NewManager(cfg Config) (*Manager, error) {
	if err := cfg.applyDefaults(); err != nil {
		return nil, err
	}
	return &Manager{
		cfg:   cfg,
		log:   cfg.Logger.With("processor", cfg.Prefix, "owner", cfg.Owner),
		rnd:   mathrand.New(mathrand.NewPCG(mathrand.Uint64(), mathrand.Uint64())),
		epoch: time.Now(),
		held:  map[string]*held{},
		stop:  make(chan struct{}),
	}, nil
}

// Owner returns this instance's name in Lease.Owner.
func (m *Manager) Owner() string { return m.cfg.Owner }

// Owned returns copies of the leases this instance runs a worker for, by ID.
func (m *Manager) Owned() []*Lease {
	m.mu.Lock()
	out := make([]*Lease, 0, len(m.held))
	for _, h := range m.held {
		out = append(out, h.snap.Load().Clone())
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b *Lease) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Run blocks until ctx is done. It first bootstraps the leases if
// Config.Bootstrap is set: under a lock lease "{Prefix}.lock" one instance
// creates the leases, unless some exist already, and then "{Prefix}.info";
// the others wait until "{Prefix}.info" exists. A crash part way leaves the
// lock and no ".info"; once the lock expires the next instance completes
// the set (creating a lease that exists is a no-op).
//
// Then, every AcquireInterval, it lists the leases and takes its share (see
// plan). Each held lease gets a goroutine that runs the Worker and renews
// the lease every RenewInterval. A lease is lost when a renew or checkpoint
// is refused, when a listing shows another owner, or when no write succeeded
// for Expiry (others may have taken it by then); the worker's context is
// then cancelled and its checkpoints refused.
//
// When ctx is done, Run cancels every worker (cause ErrShutdown), keeps
// renewing until each has returned, releases the leases and returns nil.
// Errors from bootstrapping are returned; store errors in the loop are
// logged and retried at the next cycle.
func (m *Manager) Run(ctx context.Context) error {
	if !m.ran.CompareAndSwap(false, true) {
		return errors.New("lease: Manager.Run called twice")
	}
	m.base = context.WithoutCancel(ctx)
	defer m.shutdown()
	if m.cfg.Bootstrap != nil {
		if err := m.bootstrapRetrying(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	t := time.NewTicker(m.cfg.AcquireInterval)
	defer t.Stop()
	for {
		m.balance(ctx)
		m.balanced.Store(true)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// bootstrapRetrying bootstraps, retrying failures (a 503 reading the feed
// ranges, a store that is briefly down) with backoff like every other
// read, until ctx ends or an error says retrying cannot help (Fatal()).
func (m *Manager) bootstrapRetrying(ctx context.Context) error {
	backoff := 500 * time.Millisecond
	var since, logged time.Time
	for {
		err := m.bootstrap(ctx)
		var fatal interface{ Fatal() bool }
		if err == nil || ctx.Err() != nil || errors.As(err, &fatal) && fatal.Fatal() {
			return err
		}
		if since.IsZero() {
			since = time.Now()
		}
		if time.Since(logged) >= 30*time.Second {
			m.log.Warn("lease: bootstrap failed; retrying with backoff", "err", err, "failing_for", time.Since(since).Round(time.Second).String(), "next_in", backoff.String())
			logged = time.Now()
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// Balanced reports whether the leases exist (bootstrapped, so a "now" start
// is resolved) and a first balancing cycle has taken this instance's share.
func (m *Manager) Balanced() bool { return m.balanced.Load() }

func (m *Manager) shutdown() {
	m.mu.Lock()
	m.stopping = true
	close(m.stop)
	m.mu.Unlock()
	m.wg.Wait()
}

// opContext bounds one store call made on the Manager's own behalf (a
// release, a split, the bootstrap lock), which must go on after Run's ctx
// is done. Past the expiry such a call is moot: the lease is free anyway.
func (m *Manager) opContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(m.base, m.cfg.Expiry/2)
}

func (m *Manager) running(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.held[id]
	return ok
}

// balance runs one cycle: list, notice stolen leases, take the plan.
func (m *Manager) balance(ctx context.Context) {
	listed := time.Now()
	lctx, cancel := context.WithTimeout(ctx, m.cfg.RenewInterval)
	leases, err := m.cfg.Store.List(lctx, m.cfg.Prefix+Separator)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("lease: list failed", "err", err)
		}
		return
	}
	m.noticeStolen(leases, listed)
	for _, p := range plan(leases, m.cfg.Owner, m.running, m.cfg.Expiry, m.cfg.MaxLeases, m.rnd) {
		if ctx.Err() != nil {
			return
		}
		start := time.Now()
		// Not Run's ctx: cancelling an acquire half way would leave its
		// outcome unknown, and a lease owned but not run until it expires.
		actx, cancel := context.WithTimeout(m.base, m.cfg.RenewInterval)
		n, err := m.cfg.Store.Acquire(actx, p.lease, m.cfg.Owner, AcquireOptions{Expiry: m.cfg.Expiry, Steal: p.steal})
		cancel()
		switch {
		case IsConflict(err):
			m.log.Debug("lease: acquire lost a race", "lease", p.lease.ID, "err", err)
			continue
		case err != nil:
			m.log.Warn("lease: acquire failed", "lease", p.lease.ID, "err", err)
			continue
		}
		if p.steal {
			m.log.Info("lease: stole lease to balance", "lease", n.ID, "from", p.lease.Owner)
		} else {
			m.log.Info("lease: acquired", "lease", n.ID)
		}
		m.startOrRelease(n, start)
	}
}

// noticeStolen marks lost the held leases that a listing shows owned by
// someone else, sooner than their next renew would. Only leases taken
// before the listing started count: a listing may predate a later take.
func (m *Manager) noticeStolen(leases []*Lease, listed time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range leases {
		h, ok := m.held[l.ID]
		if ok && l.Owner != m.cfg.Owner && h.since.Before(listed) {
			h.lose(&LostError{Op: "list", ID: l.ID, Owner: l.Owner})
		}
	}
}

// startOrRelease runs a worker for l, just written with this instance as
// owner by a write that started at wrote, or releases l when stopping.
func (m *Manager) startOrRelease(l *Lease, wrote time.Time) {
	m.mu.Lock()
	if m.held[l.ID] != nil {
		// Already running (cannot happen: plan skips running leases and
		// split children are new); the running copy finds the conflict.
		m.mu.Unlock()
		return
	}
	if m.stopping {
		m.mu.Unlock()
		m.release(l)
		return
	}
	wctx, cancel := context.WithCancelCause(m.base)
	h := &held{m: m, id: l.ID, since: time.Now(), cancel: cancel}
	h.snap.Store(l)
	h.lease = l
	h.renewed.Store(int64(wrote.Sub(m.epoch)))
	m.held[l.ID] = h
	m.wg.Add(1)
	m.mu.Unlock()
	go m.supervise(h, wctx)
}

func (m *Manager) release(l *Lease) {
	ctx, cancel := m.opContext()
	defer cancel()
	err := m.cfg.Store.Release(ctx, l)
	var c *ConflictError
	if errors.As(err, &c) && c.Owner == m.cfg.Owner {
		// Still ours, but not our last copy: a write whose answer was
		// lost (a checkpoint cancelled in flight) moved it on. The worker
		// has returned, so release the stored copy.
		if cur, lerr := m.cfg.Store.List(ctx, l.ID); lerr == nil {
			for _, x := range cur {
				if x.ID == l.ID && x.Owner == m.cfg.Owner {
					err = m.cfg.Store.Release(ctx, x)
				}
			}
		}
	}
	if err != nil {
		m.log.Warn("lease: release failed", "lease", l.ID, "err", err)
		return
	}
	m.log.Info("lease: released", "lease", l.ID)
}

// logLost says once why a held lease was lost, at the level an operator
// would act on: a lease rewritten while still ours (a checkpoint reset) or
// taken by another instance (balancing, a restarted pod taking its leases
// back) is the system working, INFO; one this instance could not renew in
// time means it lost touch with the store, WARN.
func (m *Manager) logLost(id string, lost error) {
	var le *LostError
	errors.As(lost, &le)
	switch {
	case le != nil && le.Owner == m.cfg.Owner:
		m.log.Info("lease: rewritten by another writer (a checkpoint reset); restarting from its new checkpoint", "lease", id)
	case le != nil && le.Owner != "":
		m.log.Info("lease: taken by another instance; worker stopped", "lease", id, "owner", le.Owner)
	case le != nil && le.Gone:
		m.log.Info("lease: deleted by another writer; worker stopped", "lease", id)
	default:
		m.log.Warn("lease: lost; worker stopped without checkpointing", "lease", id, "err", lost)
	}
}

// supervise runs the worker of h and renews h until the worker returns,
// then releases, splits or drops the lease.
func (m *Manager) supervise(h *held, wctx context.Context) {
	defer m.wg.Done()
	done := make(chan error, 1)
	first := h.lease.Clone()
	go func() { done <- m.cfg.Worker.Work(wctx, first, h) }()

	renew := time.NewTicker(m.cfg.RenewInterval)
	defer renew.Stop()
	deadline := time.NewTimer(h.untilDeadline())
	defer deadline.Stop()
	stop := m.stop
	var werr error
loop:
	for {
		select {
		case werr = <-done:
			break loop
		case <-renew.C:
			h.renew()
		case <-deadline.C:
			if left := h.untilDeadline(); left > 0 {
				deadline.Reset(left)
			} else {
				h.lose(&LostError{Op: "renew", ID: h.id, Err: errNotRenewed})
			}
		case <-stop:
			// Keep renewing while the worker drains: it may still
			// checkpoint what it finished.
			h.cancel(ErrShutdown)
			stop = nil
		}
	}
	parent := h.finish()
	h.cancel(nil)

	var split *SplitError
	switch lost := h.lostErr(); {
	case lost != nil:
		m.logLost(h.id, lost)
	case errors.As(werr, &split):
		m.split(parent, split.Children)
	default:
		var fatal interface{ Fatal() bool }
		switch {
		case werr == nil || errors.Is(werr, context.Canceled) || errors.Is(werr, ErrShutdown):
		case errors.As(werr, &fatal) && fatal.Fatal():
			// The process stops (changefeed.IsFatal): no retry to announce.
			m.log.Info("lease: worker stopped for good; releasing the lease", "lease", h.id)
		default:
			m.log.Error("lease: worker failed; releasing the lease to retry from its checkpoint", "lease", h.id, "err", werr)
		}
		m.release(parent)
	}
	m.mu.Lock()
	delete(m.held, h.id)
	m.mu.Unlock()
}

// split replaces the parent lease by its children. Children are
// created first, the parent deleted only after every child exists, so a
// crash in between leaves both; whoever holds the parent next finds the
// split again, its creates find the children there (conflicts, ignored),
// and it deletes the parent. Both states read overlapping ranges: that
// gives duplicates, never a gap.
func (m *Manager) split(parent *Lease, children []*Lease) {
	ctx, cancel := m.opContext()
	defer cancel()
	var created []*Lease
	var createdAt []time.Time
	for _, c := range children {
		c = c.Clone()
		if c.ID == "" {
			c.ID = parent.Prefix() + Separator + c.Token
		}
		if c.Token == "" || c.ID == parent.ID {
			m.log.Error("lease: split child without a token, or with the parent's id; keeping the parent", "lease", parent.ID, "child", c.ID)
			m.release(parent)
			return
		}
		if c.Continuation == "" {
			c.Continuation = parent.Continuation
		}
		if c.Properties == nil {
			c.Properties = maps.Clone(parent.Properties)
		}
		if c.Mode == "" {
			c.Mode = parent.Mode
		}
		c.Owner, c.ETag = m.cfg.Owner, ""
		start := time.Now()
		n, err := m.cfg.Store.Create(ctx, c)
		switch {
		case IsConflict(err):
			continue // a previous attempt created it
		case err != nil:
			m.log.Error("lease: split: creating a child failed; releasing the parent to retry", "lease", parent.ID, "child", c.ID, "err", err)
			m.release(parent)
			for _, n := range created {
				m.release(n)
			}
			return
		}
		created = append(created, n)
		createdAt = append(createdAt, start)
	}
	if err := m.cfg.Store.Delete(ctx, parent); err != nil {
		m.log.Error("lease: split: deleting the parent failed; its next owner retries", "lease", parent.ID, "err", err)
		if !IsConflict(err) {
			m.release(parent)
		}
	} else {
		m.log.Info("lease: split", "lease", parent.ID, "children", len(children))
	}
	for i, n := range created {
		m.startOrRelease(n, createdAt[i])
	}
}

var errNotRenewed = errors.New("not renewed within the expiry interval")

// held is a lease this instance runs a worker for. It is the worker's
// Checkpointer.
type held struct {
	m      *Manager
	id     string
	since  time.Time // when the worker started; see noticeStolen
	cancel context.CancelCauseFunc

	// mu serialises this lease's store writes (renew, checkpoint) so each
	// starts from the latest ETag: a conflict then always means another
	// writer.
	mu    sync.Mutex
	lease *Lease
	// snap is lease for readers that must not wait on a store call.
	snap atomic.Pointer[Lease]
	// renewed is when the last successful write started, in nanoseconds
	// since Manager.epoch (monotonic). The store stamped the lease after
	// that, so while now < renewed+Expiry nobody else can have taken it.
	renewed atomic.Int64

	smu      sync.Mutex
	lost     error
	finished bool
}

func (h *held) untilDeadline() time.Duration {
	return time.Duration(h.renewed.Load()) + h.m.cfg.Expiry - time.Since(h.m.epoch)
}

// lose marks h lost and cancels its worker; the first cause wins.
func (h *held) lose(err error) error {
	h.smu.Lock()
	defer h.smu.Unlock()
	if h.lost == nil {
		h.lost = err
		h.cancel(err)
	}
	return h.lost
}

func (h *held) lostErr() error {
	h.smu.Lock()
	defer h.smu.Unlock()
	return h.lost
}

// finish refuses further writes for h and returns its final copy, once any
// checkpoint still in flight (from a goroutine the worker left behind) is
// done.
func (h *held) finish() *Lease {
	h.smu.Lock()
	h.finished = true
	h.smu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lease
}

// refusal returns why no write may be made for h any more, or nil.
func (h *held) refusal(op string) error {
	h.smu.Lock()
	defer h.smu.Unlock()
	switch {
	case h.lost != nil:
		return h.lost
	case h.finished:
		return fmt.Errorf("lease: %s %s: the worker has returned", op, h.id)
	}
	return nil
}

// asLost turns a refused write into the loss it means for the holder: even
// if the owner is still us, someone else changed the lease (for instance a
// checkpoint reset), and going on would overwrite that.
func asLost(op, id string, err error) error {
	if IsLost(err) {
		return err
	}
	var c *ConflictError
	owner := ""
	if errors.As(err, &c) {
		owner = c.Owner
	}
	return &LostError{Op: op, ID: id, Owner: owner, Err: err}
}

func (h *held) set(l *Lease, started time.Time) {
	h.lease = l
	h.snap.Store(l)
	h.renewed.Store(int64(started.Sub(h.m.epoch)))
}

// Checkpoint implements Checkpointer.
func (h *held) Checkpoint(ctx context.Context, continuation string) error {
	if continuation == "" {
		return fmt.Errorf("lease: checkpoint %s: empty continuation", h.id)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.refusal("checkpoint"); err != nil {
		return err
	}
	start := time.Now()
	n, err := h.m.cfg.Store.Checkpoint(ctx, h.lease, continuation)
	switch {
	case IsConflict(err):
		return h.lose(asLost("checkpoint", h.id, err))
	case err != nil:
		return fmt.Errorf("lease: checkpoint %s: %w", h.id, err)
	}
	h.set(n, start)
	return nil
}

// renew is called by the supervisor only.
func (h *held) renew() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.refusal("renew") != nil {
		return
	}
	left := h.untilDeadline()
	if left <= 0 {
		h.lose(&LostError{Op: "renew", ID: h.id, Err: errNotRenewed})
		return
	}
	// A renew that lands after the deadline proves nothing: another
	// instance may already work on the lease.
	ctx, cancel := context.WithTimeout(h.m.base, min(left, h.m.cfg.RenewInterval))
	defer cancel()
	start := time.Now()
	n, err := h.m.cfg.Store.Renew(ctx, h.lease)
	switch {
	case IsConflict(err):
		h.lose(asLost("renew", h.id, err))
	case err != nil:
		h.m.log.Warn("lease: renew failed; retrying", "lease", h.id, "err", err, "left", h.untilDeadline())
	default:
		h.set(n, start)
	}
}
