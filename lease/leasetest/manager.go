package leasetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/lease"
)

// Short intervals so that scenarios take a second or two. Expiry is several
// renew intervals, as with the defaults, so one slow store call on a busy
// machine does not lose a lease.
const (
	acquireEvery = 50 * time.Millisecond
	renewEvery   = 100 * time.Millisecond
	expiry       = 800 * time.Millisecond
	patience     = 15 * time.Second // upper bound for anything to happen
)

// TestManager runs Manager scenarios on stores from newStore: balancing,
// takeover after expiry, lost leases, graceful shutdown, splits, leader
// election. Subtests run in parallel.
func TestManager(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s lease.Store)
	}{
		{"BootstrapAndBalance", testBootstrapAndBalance},
		{"BootstrapKeepsExistingLeases", testBootstrapKeepsExisting},
		{"BootstrapCompletesAfterCrash", testBootstrapAfterCrash},
		{"StoppedWithoutRelease", testStoppedWithoutRelease},
		{"UnreachableStoreLosesLeases", testUnreachableStore},
		{"RestartWithSameOwnerRetakes", testRestartSameOwner},
		{"LostLease", testLostLease},
		{"ExternalCheckpointRestartsWorker", testExternalCheckpoint},
		{"GracefulShutdownReleases", testGracefulShutdown},
		{"ReleaseAfterLostAnswer", testReleaseAfterLostAnswer},
		{"WorkerErrorRetriesFromCheckpoint", testWorkerError},
		{"Split", testSplit},
		{"SplitInterrupted", testSplitInterrupted},
		{"LeaderElection", testLeaderElection},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

// Faulty wraps a store; while Down every call fails as if the network were
// cut, which is how a test crashes an instance without releasing. Sources'
// tests use it too.
type Faulty struct {
	lease.Store
	Down        atomic.Bool
	FailDeletes atomic.Int32 // fail this many Delete calls
	// LoseAnswers makes this many Checkpoint calls write to the store but
	// answer with an error, as a call cancelled in flight does.
	LoseAnswers atomic.Int32
	// Lists counts List calls: a Manager lists once per acquire cycle, so
	// a test can wait for cycles to pass instead of sleeping.
	Lists atomic.Int64
}

var errDown = errors.New("leasetest: store unreachable")

func (f *Faulty) List(ctx context.Context, p string) ([]*lease.Lease, error) {
	f.Lists.Add(1)
	if f.Down.Load() {
		return nil, errDown
	}
	return f.Store.List(ctx, p)
}

func (f *Faulty) Create(ctx context.Context, l *lease.Lease) (*lease.Lease, error) {
	if f.Down.Load() {
		return nil, errDown
	}
	return f.Store.Create(ctx, l)
}

func (f *Faulty) Acquire(ctx context.Context, l *lease.Lease, o string, opts lease.AcquireOptions) (*lease.Lease, error) {
	if f.Down.Load() {
		return nil, errDown
	}
	return f.Store.Acquire(ctx, l, o, opts)
}

func (f *Faulty) Renew(ctx context.Context, l *lease.Lease) (*lease.Lease, error) {
	if f.Down.Load() {
		return nil, errDown
	}
	return f.Store.Renew(ctx, l)
}

func (f *Faulty) Checkpoint(ctx context.Context, l *lease.Lease, c string) (*lease.Lease, error) {
	if f.Down.Load() {
		return nil, errDown
	}
	n, err := f.Store.Checkpoint(ctx, l, c)
	if err == nil && f.LoseAnswers.Add(-1) >= 0 {
		return nil, errAnswerLost
	}
	return n, err
}

var errAnswerLost = errors.New("leasetest: the store wrote, the answer was lost")

func (f *Faulty) Release(ctx context.Context, l *lease.Lease) error {
	if f.Down.Load() {
		return errDown
	}
	return f.Store.Release(ctx, l)
}

func (f *Faulty) Delete(ctx context.Context, l *lease.Lease) error {
	if f.Down.Load() {
		return errDown
	}
	if f.FailDeletes.Add(-1) >= 0 {
		return errDown
	}
	return f.Store.Delete(ctx, l)
}

// run is one worker run as a tracker saw it.
type run struct {
	lease   *lease.Lease // as handed to the worker
	started time.Time
	cause   error // context.Cause at the end; nil while running
	done    bool
}

// tracker records the worker runs of one manager. Its worker blocks until
// its context ends unless body says otherwise.
type tracker struct {
	body func(ctx context.Context, l *lease.Lease, cp lease.Checkpointer) error

	mu   sync.Mutex
	runs map[string][]*run
}

func newTracker(body func(ctx context.Context, l *lease.Lease, cp lease.Checkpointer) error) *tracker {
	return &tracker{body: body, runs: map[string][]*run{}}
}

func (tr *tracker) Work(ctx context.Context, l *lease.Lease, cp lease.Checkpointer) error {
	r := &run{lease: l.Clone(), started: time.Now()}
	tr.mu.Lock()
	tr.runs[l.ID] = append(tr.runs[l.ID], r)
	tr.mu.Unlock()
	var err error
	if tr.body != nil {
		err = tr.body(ctx, l, cp)
	} else {
		<-ctx.Done()
	}
	tr.mu.Lock()
	r.cause, r.done = context.Cause(ctx), true
	tr.mu.Unlock()
	return err
}

// running returns the IDs with a worker running, sorted.
func (tr *tracker) running() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []string
	for id, rs := range tr.runs {
		if len(rs) > 0 && !rs[len(rs)-1].done {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

func (tr *tracker) history(id string) []run {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []run
	for _, r := range tr.runs[id] {
		out = append(out, *r)
	}
	return out
}

type instance struct {
	m    *lease.Manager
	tr   *tracker
	s    *Faulty
	stop func() error // cancels Run and waits for it
}

func start(t *testing.T, s lease.Store, cfg lease.Config, tr *tracker, setup ...func(*Faulty)) *instance {
	t.Helper()
	f := &Faulty{Store: s}
	for _, fn := range setup {
		fn(f)
	}
	cfg.Store, cfg.Worker = f, tr
	if cfg.AcquireInterval == 0 {
		cfg.AcquireInterval = acquireEvery
	}
	if cfg.RenewInterval == 0 {
		cfg.RenewInterval = renewEvery
	}
	if cfg.Expiry == 0 {
		cfg.Expiry = expiry
	}
	m, err := lease.NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &instance{m: m, tr: tr, s: f, stop: testkit.Run(t, m.Run)}
}

// cycles waits until every instance has run n more acquire cycles.
func cycles(t *testing.T, n int64, insts ...*instance) {
	t.Helper()
	from := make([]int64, len(insts))
	for i, in := range insts {
		from[i] = in.s.Lists.Load()
	}
	testkit.Eventually(t, patience, fmt.Sprintf("%d acquire cycles", n), func() string {
		for i, in := range insts {
			if done := in.s.Lists.Load() - from[i]; done < n {
				return fmt.Sprintf("%s ran %d", in.m.Owner(), done)
			}
		}
		return ""
	})
}

func list(t *testing.T, s lease.Store, prefix string) []*lease.Lease {
	t.Helper()
	ls, err := s.List(context.Background(), prefix)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	return ls
}

func owners(ls []*lease.Lease) map[string][]string {
	out := map[string][]string{}
	for _, l := range ls {
		out[l.Owner] = append(out[l.Owner], l.ID)
	}
	return out
}

// createLeases makes n range leases under prefix directly in the store.
func createLeases(t *testing.T, s lease.Store, prefix string, n int) []*lease.Lease {
	t.Helper()
	var out []*lease.Lease
	for _, l := range ranges(prefix, n) {
		out = append(out, mustCreate(t, s, l))
	}
	return out
}

// ranges splits the EPK space "" to "FF" into n ranges.
func ranges(prefix string, n int) []*lease.Lease {
	var out []*lease.Lease
	lo := ""
	for i := 1; i <= n; i++ {
		hi := "FF"
		if i < n {
			hi = fmt.Sprintf("%02X", i*256/n)
		}
		out = append(out, lease.ForRange(prefix, lo, hi))
		lo = hi
	}
	return out
}

func testBootstrapAndBalance(t *testing.T, s lease.Store) {
	const prefix, n = "bal", 8
	var calls atomic.Int32
	boot := func(ctx context.Context) ([]*lease.Lease, error) {
		calls.Add(1)
		return ranges(prefix, n), nil
	}
	var insts []*instance
	for i := range 3 {
		insts = append(insts, start(t, s, lease.Config{
			Prefix: prefix, Owner: fmt.Sprintf("i%d", i), Bootstrap: boot,
		}, newTracker(nil)))
	}
	balanced := func() string {
		ls := list(t, s, prefix+lease.Separator)
		if len(ls) != n {
			return fmt.Sprintf("%d leases, want %d", len(ls), n)
		}
		own := owners(ls)
		lo, hi := n, 0
		for _, in := range insts {
			mine := own[in.m.Owner()]
			lo, hi = min(lo, len(mine)), max(hi, len(mine))
			if got := in.tr.running(); !slices.Equal(got, mine) {
				return fmt.Sprintf("%s runs workers for %v but owns %v", in.m.Owner(), got, mine)
			}
			if got := ids(in.m.Owned()); !slices.Equal(got, mine) {
				return fmt.Sprintf("%s reports Owned %v but owns %v", in.m.Owner(), got, mine)
			}
		}
		if len(own[""]) > 0 || hi-lo > 1 {
			return fmt.Sprintf("unbalanced: %v", own)
		}
		return ""
	}
	testkit.Eventually(t, patience, "three managers over eight leases balance", balanced)
	before := owners(list(t, s, prefix+lease.Separator))
	cycles(t, 10, insts...)
	if msg := balanced(); msg != "" {
		t.Fatalf("balance did not hold: %s", msg)
	}
	if after := owners(list(t, s, prefix+lease.Separator)); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("a balanced assignment kept moving: %v then %v", before, after)
	}
	if c := calls.Load(); c != 1 {
		t.Errorf("Bootstrap called %d times, want once", c)
	}
	all := ids(list(t, s, prefix+"."))
	if !slices.Contains(all, prefix+".info") || slices.Contains(all, prefix+".lock") {
		t.Errorf("bookkeeping documents: %v, want %s.info and no lock", all, prefix)
	}
}

func testBootstrapKeepsExisting(t *testing.T, s lease.Store) {
	const prefix = "keep"
	createLeases(t, s, prefix, 2) // e.g. by an operator; no ".info"
	var calls atomic.Int32
	a := start(t, s, lease.Config{Prefix: prefix, Owner: "a", Bootstrap: func(context.Context) ([]*lease.Lease, error) {
		calls.Add(1)
		return ranges(prefix, 8), nil
	}}, newTracker(nil))
	testkit.Eventually(t, patience, "a runs the two existing leases", func() string {
		if r := a.tr.running(); len(r) != 2 {
			return fmt.Sprint(r)
		}
		return ""
	})
	if n := calls.Load(); n != 0 {
		t.Errorf("Bootstrap called %d times although leases existed", n)
	}
	if ls := list(t, s, prefix+"."); !slices.Equal(ids(ls), []string{"keep..-80", "keep..80-FF", "keep.info"}) {
		t.Errorf("leases %v", ids(ls))
	}
}

func testBootstrapAfterCrash(t *testing.T, s lease.Store) {
	// A bootstrapper died after creating the lock and one of four leases;
	// that lease has progress already.
	const prefix = "boot"
	mustCreate(t, s, &lease.Lease{ID: prefix + ".lock", Owner: "dead"})
	first := ranges(prefix, 4)[0]
	first.Continuation = "progress"
	mustCreate(t, s, first)
	started := time.Now()
	a := start(t, s, lease.Config{Prefix: prefix, Owner: "a", Bootstrap: func(context.Context) ([]*lease.Lease, error) {
		return ranges(prefix, 4), nil
	}}, newTracker(nil))
	testkit.Eventually(t, patience, "a completes the set and runs it", func() string {
		if r := a.tr.running(); len(r) != 4 {
			return fmt.Sprint(r)
		}
		return ""
	})
	if d := time.Since(started); d < expiry-100*time.Millisecond {
		t.Errorf("took the dead bootstrapper's lock after %v, before it expired", d)
	}
	if g := get(t, s, first.ID); g.Continuation != "progress" {
		t.Errorf("existing lease reset to %q", g.Continuation)
	}
	all := ids(list(t, s, prefix+"."))
	if !slices.Contains(all, prefix+".info") || slices.Contains(all, prefix+".lock") {
		t.Errorf("bookkeeping documents: %v", all)
	}
}

func testStoppedWithoutRelease(t *testing.T, s lease.Store) {
	const prefix = "crash"
	createLeases(t, s, prefix, 4)
	a := start(t, s, lease.Config{Prefix: prefix, Owner: "a"}, newTracker(nil))
	b := start(t, s, lease.Config{Prefix: prefix, Owner: "b"}, newTracker(nil))
	testkit.Eventually(t, patience, "two managers share four leases", func() string {
		own := owners(list(t, s, prefix+lease.Separator))
		if len(own["a"]) != 2 || len(own["b"]) != 2 {
			return fmt.Sprint(own)
		}
		return ""
	})
	aLeases := owners(list(t, s, prefix+lease.Separator))["a"]

	// Crash a: the store is unreachable for it, so it neither renews nor
	// releases.
	crashed := time.Now()
	a.s.Down.Store(true)
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	if got := owners(list(t, s, prefix+lease.Separator))["a"]; !slices.Equal(got, aLeases) {
		t.Fatalf("a crashed instance's leases changed: %v, want still %v", got, aLeases)
	}
	testkit.Eventually(t, patience, "b takes and runs the crashed instance's leases", func() string {
		if own := owners(list(t, s, prefix+lease.Separator)); len(own["b"]) != 4 {
			return fmt.Sprint(own)
		}
		if r := b.tr.running(); len(r) != 4 {
			return fmt.Sprintf("b runs %v", r)
		}
		for _, id := range aLeases {
			if h := b.tr.history(id); len(h) == 0 || h[len(h)-1].started.Before(crashed) {
				return "b has not started " + id + " since the crash"
			}
		}
		return ""
	})
	// Not before they expired: a renewed at most one renew interval before
	// the crash.
	for _, id := range aLeases {
		for _, r := range b.tr.history(id) {
			if took := r.started.Sub(crashed); took >= 0 && took < expiry-renewEvery-50*time.Millisecond {
				t.Errorf("b took %s %v after the crash, before it expired (%v)", id, took, expiry)
			}
		}
	}
}

func testUnreachableStore(t *testing.T, s lease.Store) {
	const prefix = "unreach"
	createLeases(t, s, prefix, 1)
	var cps sync.Map // lease id -> error of the checkpoint made after loss
	a := start(t, s, lease.Config{Prefix: prefix, Owner: "a"}, newTracker(
		func(ctx context.Context, l *lease.Lease, cp lease.Checkpointer) error {
			<-ctx.Done()
			err := cp.Checkpoint(context.Background(), "after-loss")
			cps.Store(l.ID, err)
			return ctx.Err()
		}))
	id := prefix + lease.Separator + "-FF"
	testkit.Eventually(t, patience, "a runs the lease", func() string {
		if r := a.tr.running(); len(r) != 1 {
			return fmt.Sprint(r)
		}
		return ""
	})
	// Cut a off: nobody else may have taken the lease, but after the
	// expiry a cannot know, so it must stop its worker.
	cut := time.Now()
	a.s.Down.Store(true)
	testkit.Eventually(t, patience, "a's worker is cancelled as lost", func() string {
		h := a.tr.history(id)
		if r := h[len(h)-1]; !r.done || !lease.IsLost(r.cause) {
			return fmt.Sprintf("run done=%v cause=%v", r.done, r.cause)
		}
		return ""
	})
	if d := time.Since(cut); d < expiry-renewEvery-50*time.Millisecond {
		t.Errorf("lost after %v, before the expiry %v", d, expiry)
	}
	if v, _ := cps.Load(id); v == nil || !lease.IsLost(v.(error)) {
		t.Fatalf("checkpoint after the loss: %v, want a lost error", v)
	}
	// Back online: a takes the (now expired) lease again.
	a.s.Down.Store(false)
	testkit.Eventually(t, patience, "a runs the lease again", func() string {
		if h := a.tr.history(id); len(h) < 2 || h[len(h)-1].done {
			return fmt.Sprintf("%d runs", len(h))
		}
		return ""
	})
	if g := get(t, s, id); g.Continuation != "" {
		t.Fatalf("a checkpoint made after the loss was stored: %q", g.Continuation)
	}
}

func testRestartSameOwner(t *testing.T, s lease.Store) {
	const prefix = "restart"
	createLeases(t, s, prefix, 2)
	long := lease.Config{Prefix: prefix, Owner: "pod-0", Expiry: 30 * time.Second}
	a := start(t, s, long, newTracker(nil))
	testkit.Eventually(t, patience, "pod-0 runs both", func() string {
		if r := a.tr.running(); len(r) != 2 {
			return fmt.Sprint(r)
		}
		return ""
	})
	a.s.Down.Store(true)
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	a2 := start(t, s, long, newTracker(nil))
	testkit.Eventually(t, patience, "the restarted pod-0 runs both", func() string {
		if r := a2.tr.running(); len(r) != 2 {
			return fmt.Sprint(r)
		}
		return ""
	})
	if d := time.Since(restarted); d > 10*time.Second {
		t.Errorf("took %v to take back its own leases; should not wait for the 30 s expiry", d)
	}
}

func testLostLease(t *testing.T, s lease.Store) {
	const prefix = "lost"
	createLeases(t, s, prefix, 1)
	id := prefix + lease.Separator + "-FF"
	cpErr := make(chan error, 1)
	a := start(t, s, lease.Config{Prefix: prefix, Owner: "a", Expiry: 30 * time.Second}, newTracker(
		func(ctx context.Context, l *lease.Lease, cp lease.Checkpointer) error {
			if err := cp.Checkpoint(ctx, "done-1"); err != nil {
				return err
			}
			<-ctx.Done()
			// In-flight work finishing after the loss must not be recorded.
			cpErr <- cp.Checkpoint(context.Background(), "in-flight")
			return nil
		}))
	testkit.Eventually(t, patience, "a checkpoints", func() string {
		if g := get(t, s, id); g.Continuation != "done-1" {
			return fmt.Sprintf("continuation %q", g.Continuation)
		}
		return ""
	})
	thief := mustAcquire(t, s, get(t, s, id), "thief", lease.AcquireOptions{Steal: true})
	select {
	case err := <-cpErr:
		if !lease.IsLost(err) {
			t.Fatalf("checkpoint after the steal: %v, want a lost error", err)
		}
	case <-time.After(patience):
		t.Fatal("the worker of a stolen lease was not cancelled")
	}
	testkit.Eventually(t, patience, "the worker returns", func() string {
		if h := a.tr.history(id); !h[0].done {
			return "still running"
		}
		return ""
	})
	if h := a.tr.history(id); !lease.IsLost(h[0].cause) {
		t.Errorf("cause = %v, want a lost error", h[0].cause)
	}
	g := get(t, s, id)
	if g.Owner != "thief" || g.Continuation != "done-1" {
		t.Fatalf("after the loss: owner %q continuation %q, want thief and done-1", g.Owner, g.Continuation)
	}
	// a does not steal it back: the thief holds a fair share of one.
	cycles(t, 5, a)
	if g := get(t, s, id); g.Owner != "thief" || g.ETag != thief.ETag {
		t.Fatalf("lease changed hands again: %+v", g)
	}
}

func testExternalCheckpoint(t *testing.T, s lease.Store) {
	// A checkpoint reset by an operator while an instance holds the lease:
	// the holder must not overwrite it, and restarts from it.
	const prefix = "reset"
	createLeases(t, s, prefix, 1)
	id := prefix + lease.Separator + "-FF"
	a := start(t, s, lease.Config{Prefix: prefix, Owner: "a"}, newTracker(nil))
	testkit.Eventually(t, patience, "a runs the lease", func() string {
		if r := a.tr.running(); len(r) != 1 {
			return fmt.Sprint(r)
		}
		return ""
	})
	if _, err := s.Checkpoint(context.Background(), get(t, s, id), "reset-point"); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, patience, "a restarts its worker from the reset point", func() string {
		h := a.tr.history(id)
		if len(h) < 2 || h[len(h)-1].done {
			return fmt.Sprintf("%d runs", len(h))
		}
		if c := h[len(h)-1].lease.Continuation; c != "reset-point" {
			return "restarted from " + c
		}
		return ""
	})
	if h := a.tr.history(id); !lease.IsLost(h[0].cause) {
		t.Errorf("first run's cause = %v, want a lost error", h[0].cause)
	}
}

// testReleaseAfterLostAnswer: a checkpoint the store applied but whose
// answer was lost leaves the holder's copy behind the stored one; when the
// worker returns, the lease is still released at once, not left to expire.
func testReleaseAfterLostAnswer(t *testing.T, s lease.Store) {
	const prefix = "lostanswer"
	createLeases(t, s, prefix, 1)
	a := start(t, s, lease.Config{Prefix: prefix, Owner: "a", Expiry: 30 * time.Second}, newTracker(
		func(ctx context.Context, l *lease.Lease, cp lease.Checkpointer) error {
			if err := cp.Checkpoint(ctx, "written"); err == nil {
				return errors.New("the answer should have been lost")
			}
			<-ctx.Done()
			return nil
		}), func(f *Faulty) { f.LoseAnswers.Store(1) })
	testkit.Eventually(t, patience, "the checkpoint to be written", func() string {
		for _, l := range list(t, s, prefix+lease.Separator) {
			if l.Continuation != "written" {
				return l.ID + " at " + l.Continuation
			}
		}
		return ""
	})
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	for _, l := range list(t, s, prefix+lease.Separator) {
		if l.Owner != "" {
			t.Errorf("%s still owned by %q after shutdown", l.ID, l.Owner)
		}
	}
}

func testGracefulShutdown(t *testing.T, s lease.Store) {
	const prefix = "graceful"
	createLeases(t, s, prefix, 3)
	var started atomic.Int32 // workers whose first checkpoint returned
	a := start(t, s, lease.Config{Prefix: prefix, Owner: "a", Expiry: 30 * time.Second}, newTracker(
		func(ctx context.Context, l *lease.Lease, cp lease.Checkpointer) error {
			if err := cp.Checkpoint(ctx, "started"); err != nil {
				return err
			}
			started.Add(1)
			<-ctx.Done()
			if !errors.Is(context.Cause(ctx), lease.ErrShutdown) {
				return context.Cause(ctx)
			}
			// Drain: checkpoint what was finished, on a context of our own.
			return cp.Checkpoint(context.WithoutCancel(ctx), "final")
		}))
	// Wait for the workers to see their checkpoints done, not only for the
	// store to hold them: a shutdown during the call cancels it, and the
	// worker then never reaches its final checkpoint.
	testkit.Until(t, patience, "a runs and checkpoints three", func() bool { return started.Load() == 3 })
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	for _, l := range list(t, s, prefix+lease.Separator) {
		if l.Owner != "" || l.Continuation != "final" {
			t.Errorf("%s after shutdown: owner %q continuation %q, want released at final", l.ID, l.Owner, l.Continuation)
		}
		if h := a.tr.history(l.ID); !errors.Is(h[0].cause, lease.ErrShutdown) {
			t.Errorf("%s cause %v, want ErrShutdown", l.ID, h[0].cause)
		}
	}
	if r := a.tr.running(); len(r) != 0 {
		t.Errorf("workers still running after Run returned: %v", r)
	}
}

func testWorkerError(t *testing.T, s lease.Store) {
	const prefix = "werr"
	createLeases(t, s, prefix, 1)
	id := prefix + lease.Separator + "-FF"
	var n atomic.Int32
	a := start(t, s, lease.Config{Prefix: prefix, Owner: "a"}, newTracker(
		func(ctx context.Context, l *lease.Lease, cp lease.Checkpointer) error {
			if n.Add(1) == 1 {
				if err := cp.Checkpoint(ctx, "c1"); err != nil {
					return err
				}
				return errors.New("publish failed for good")
			}
			<-ctx.Done()
			return nil
		}))
	testkit.Eventually(t, patience, "the lease runs again after a worker error", func() string {
		h := a.tr.history(id)
		if len(h) < 2 {
			return fmt.Sprintf("%d runs", len(h))
		}
		if c := h[1].lease.Continuation; c != "c1" {
			return "second run started at " + c
		}
		return ""
	})
}

func testSplit(t *testing.T, s lease.Store) {
	const prefix = "split"
	parent := createLeases(t, s, prefix, 1)[0]
	// A parent with progress, and one child left by an earlier attempt that
	// crashed before deleting the parent; that child has progress of its
	// own, which must survive.
	p := mustAcquire(t, s, parent, "x", lease.AcquireOptions{})
	p, err := s.Checkpoint(context.Background(), p, "cont-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Release(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	left := lease.ForRange(prefix, "", "7F")
	left.Continuation = "child-progress"
	mustCreate(t, s, left)

	a := start(t, s, lease.Config{Prefix: prefix, Owner: "a"}, newTracker(
		func(ctx context.Context, l *lease.Lease, cp lease.Checkpointer) error {
			if l.ID == parent.ID {
				return &lease.SplitError{Children: []*lease.Lease{
					lease.ForRange(l.Prefix(), "", "7F"),
					lease.ForRange(l.Prefix(), "7F", "FF"),
				}}
			}
			<-ctx.Done()
			return nil
		}))
	wantSplit(t, s, a, prefix)
}

func wantSplit(t *testing.T, s lease.Store, a *instance, prefix string) {
	t.Helper()
	leftID, rightID := prefix+"..-7F", prefix+"..7F-FF"
	testkit.Eventually(t, patience, "the split completes and both children run", func() string {
		ls := list(t, s, prefix+lease.Separator)
		if got := ids(ls); !slices.Equal(got, []string{leftID, rightID}) {
			return fmt.Sprintf("leases %v", got)
		}
		if r := a.tr.running(); !slices.Equal(r, []string{leftID, rightID}) {
			return fmt.Sprintf("running %v", r)
		}
		if g := get(t, s, rightID); g.Continuation != "cont-1" || g.Owner != "a" {
			return fmt.Sprintf("new child: continuation %q owner %q, want the parent's cont-1, owned by a", g.Continuation, g.Owner)
		}
		if g := get(t, s, leftID); g.Continuation != "child-progress" {
			return fmt.Sprintf("existing child: continuation %q, want its own progress kept", g.Continuation)
		}
		return ""
	})
	if h := a.tr.history(rightID); h[0].lease.Continuation != "cont-1" {
		t.Errorf("new child's worker started at %q, want cont-1", h[0].lease.Continuation)
	}
}

func testSplitInterrupted(t *testing.T, s lease.Store) {
	const prefix = "split2"
	parent := createLeases(t, s, prefix, 1)[0]
	p := mustAcquire(t, s, parent, "x", lease.AcquireOptions{})
	p, err := s.Checkpoint(context.Background(), p, "cont-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Release(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	var splits atomic.Int32
	tr := newTracker(func(ctx context.Context, l *lease.Lease, cp lease.Checkpointer) error {
		if l.ID == parent.ID {
			splits.Add(1)
			return &lease.SplitError{Children: []*lease.Lease{
				lease.ForRange(l.Prefix(), "", "7F"),
				lease.ForRange(l.Prefix(), "7F", "FF"),
			}}
		}
		if l.Range.Min == "" {
			// The left child makes progress before the parent is gone.
			if err := cp.Checkpoint(ctx, "child-progress"); err != nil {
				return err
			}
		}
		<-ctx.Done()
		return nil
	})
	// The first delete of the parent fails, as if the process had died
	// between creating the children and deleting the parent.
	a := start(t, s, lease.Config{Prefix: prefix, Owner: "a"}, tr, func(f *Faulty) { f.FailDeletes.Store(1) })
	wantSplit(t, s, a, prefix)
	if n := splits.Load(); n < 2 {
		t.Errorf("the parent was split %d times, want a retry after the failed delete", n)
	}
}

func testLeaderElection(t *testing.T, s lease.Store) {
	// One lease for one replication slot: whoever holds it streams.
	const prefix = "slot"
	boot := func(context.Context) ([]*lease.Lease, error) {
		return []*lease.Lease{lease.ForPartition(prefix, "changecast_slot")}, nil
	}
	a := start(t, s, lease.Config{Prefix: prefix, Owner: "a", Bootstrap: boot}, newTracker(nil))
	testkit.Eventually(t, patience, "a leads", func() string {
		if r := a.tr.running(); len(r) != 1 {
			return fmt.Sprint(r)
		}
		return ""
	})
	b := start(t, s, lease.Config{Prefix: prefix, Owner: "b", Bootstrap: boot}, newTracker(nil))
	cycles(t, 10, b)
	if r := b.tr.running(); len(r) != 0 {
		t.Fatalf("the standby took the slot from a live leader: %v", r)
	}
	if ls := list(t, s, prefix+lease.Separator); len(ls) != 1 || ls[0].Owner != "a" {
		t.Fatalf("leases %v", ls)
	}
	stopped := time.Now()
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, patience, "b leads", func() string {
		if r := b.tr.running(); len(r) != 1 {
			return fmt.Sprint(r)
		}
		return ""
	})
	// A released lease needs no expiry.
	if d := time.Since(stopped); d > expiry {
		t.Errorf("standby took over %v after a graceful stop; want the next acquire cycle", d)
	}
}
