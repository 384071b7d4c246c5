package publish_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/schema/wire"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeSource emits a fixed list of events, then waits for ctx.
type fakeSource struct {
	events []changefeed.Event
	mu     sync.Mutex
	cps    []changefeed.Position
}

func (s *fakeSource) Run(ctx context.Context, out chan<- changefeed.Event) error {
	for _, e := range s.events {
		select {
		case out <- e:
		case <-ctx.Done():
			return nil
		}
	}
	<-ctx.Done()
	return nil
}

func (s *fakeSource) Checkpoint(_ context.Context, p changefeed.Position) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cps = append(s.cps, p)
	return nil
}

func (s *fakeSource) last() changefeed.Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cps) == 0 {
		return ""
	}
	return s.cps[len(s.cps)-1]
}

// inserts makes n single-change transactions across groups: change i goes
// to group g(i%groups) and is followed by its commit position "p<i>".
func inserts(n, groups int) []changefeed.Event {
	var evs []changefeed.Event
	for i := 1; i <= n; i++ {
		evs = append(evs, changefeed.Event{Change: &changefeed.Change{Collection: "c", ID: strconv.Itoa(i), Op: changefeed.Insert,
			Version: strconv.Itoa(i), After: map[string]any{"id": i, "g": fmt.Sprint(i % groups)}}},
			changefeed.Event{Position: changefeed.Position(fmt.Sprintf("p%06d", i))})
	}
	return evs
}

type recorder struct {
	mu      sync.Mutex
	batches []*publish.Batch
	calls   int
	done    int // calls that returned
	fn      func(call int, b *publish.Batch) error
}

func (r *recorder) Publish(ctx context.Context, b *publish.Batch) error {
	r.mu.Lock()
	r.calls++
	call := r.calls
	r.mu.Unlock()
	var err error
	if r.fn != nil {
		err = r.fn(call, b)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done++
	if err != nil {
		return err
	}
	r.batches = append(r.batches, b)
	return nil
}

func (r *recorder) entered() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

func (r *recorder) returned() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.done
}

func (r *recorder) changes() map[string][]wire.Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]wire.Entry{}
	for _, b := range r.batches {
		var env wire.Envelope
		if err := json.Unmarshal(b.Payload, &env); err != nil {
			panic(err)
		}
		out[env.Group] = append(out[env.Group], env.Changes...)
	}
	return out
}

// pipelineConfig is the test's pipeline: quiet, short backoffs, small
// batches sent at once.
func pipelineConfig(cfg publish.PipelineConfig) publish.PipelineConfig {
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.MaxBackoff = 20 * time.Millisecond
	if cfg.Batch.MaxChanges == 0 {
		cfg.Batch = publish.BatchLimits{MaxChanges: 10, MaxBytes: 64 << 10}
	}
	return cfg
}

// start runs src through a pipeline publishing to pub under a processor;
// the returned stop cancels ctx (with cause, if given) and waits for Run.
func start(t *testing.T, src *fakeSource, pub publish.Publisher, m *publish.Mapper, cfg publish.PipelineConfig) (stop func(cause error) error) {
	t.Helper()
	if m == nil {
		var err error
		m, err = publish.NewMapper([]publish.Mapping{{Collection: "c", Hub: "h", Group: "{/g}", Method: "t"}}, publish.MapperOptions{ShadowSize: 1000})
		if err != nil {
			t.Fatal(err)
		}
	}
	p := changefeed.NewProcessor(changefeed.ProcessorConfig{Logger: slog.New(slog.DiscardHandler)}, src, publish.NewPipeline(pipelineConfig(cfg), m, pub))
	ctx, cancel := context.WithCancelCause(context.Background())
	done := testkit.Go(t, func() error { return p.Run(ctx) })
	t.Cleanup(func() { cancel(nil) })
	return func(cause error) error {
		cancel(cause)
		return testkit.Recv(t, done, 30*time.Second, "Run to return")
	}
}

// run publishes src until until holds (failing the test after 10 s), then
// stops softly.
func run(t *testing.T, src *fakeSource, pub publish.Publisher, until func() bool, cfg publish.PipelineConfig) {
	t.Helper()
	stop := start(t, src, pub, nil, cfg)
	testkit.Until(t, 10*time.Second, "the stream to be published", until)
	if err := stop(nil); err != nil {
		t.Fatal(err)
	}
}

// checkOrdered: every change delivered once per group, in version order.
func checkOrdered(t *testing.T, got map[string][]wire.Entry, n int) {
	t.Helper()
	total := 0
	for g, cs := range got {
		for i := 1; i < len(cs); i++ {
			if wire.CompareVersions(cs[i-1].V, cs[i].V) >= 0 {
				t.Fatalf("group %s out of order: %s then %s", g, cs[i-1].V, cs[i].V)
			}
		}
		total += len(cs)
	}
	if total != n {
		t.Fatalf("delivered %d changes, want %d", total, n)
	}
}

func TestDeliversInOrderAndCheckpoints(t *testing.T) {
	src := &fakeSource{events: inserts(500, 7)}
	rec := &recorder{fn: func(call int, b *publish.Batch) error {
		time.Sleep(time.Duration(call%3) * time.Millisecond) // out-of-order completions across groups
		return nil
	}}
	run(t, src, rec, func() bool { return src.last() == "p000500" }, publish.PipelineConfig{Parallelism: 4})
	checkOrdered(t, rec.changes(), 500)
	if src.last() != "p000500" {
		t.Fatalf("last checkpoint %q", src.last())
	}
	prev := changefeed.Position("")
	for _, p := range src.cps {
		if p < prev {
			t.Fatalf("checkpoints went backwards: %v", src.cps)
		}
		prev = p
	}
}

// TestRetriesAndSplitsAndRefetches: retryable errors are retried, a batch
// over the size limit is split, and a batch refused for good goes out again
// as refetch markers, whatever batch the poison change lands in.
func TestRetriesAndSplitsAndRefetches(t *testing.T) {
	src := &fakeSource{events: inserts(60, 2)}
	var mu sync.Mutex
	failures := 0
	rec := &recorder{fn: func(call int, b *publish.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case failures < 3:
			failures++
			return publish.Retryable(errors.New("503"), time.Millisecond)
		case len(b.Envelope.Changes) > 2:
			return publish.TooLarge(errors.New("413"))
		}
		for _, c := range b.Envelope.Changes {
			if c.ID == "7" && c.Op != wire.OpRefetch {
				return publish.Permanent(errors.New("400 poison"))
			}
		}
		return nil
	}}
	run(t, src, rec, func() bool { return src.last() == "p000060" }, publish.PipelineConfig{})
	got := rec.changes()
	checkOrdered(t, got, 60)
	refetched := map[string]bool{}
	for _, c := range got["1"] {
		if c.Op == wire.OpRefetch {
			if c.Reason != "publish_failed" {
				t.Errorf("refetch of %s has reason %q", c.ID, c.Reason)
			}
			refetched[c.ID] = true
		}
	}
	// 7 and at most the one change that shared its two-change batch.
	if !refetched["7"] || len(refetched) > 2 {
		t.Fatalf("refetch markers for %v, want 7 (and at most one neighbour)", refetched)
	}
}

func TestSoftStopDrainsAndCheckpoints(t *testing.T) {
	src := &fakeSource{events: inserts(200, 3)}
	var started sync.Once
	first := make(chan struct{})
	rec := &recorder{fn: func(call int, b *publish.Batch) error {
		started.Do(func() { close(first) })
		time.Sleep(20 * time.Millisecond) // slow target: the stop finds batches in flight
		return nil
	}}
	// Stop as soon as publishing started; Run must still deliver what it read.
	run(t, src, rec, func() bool {
		select {
		case <-first:
			return true
		default:
			return false
		}
	}, publish.PipelineConfig{})
	published := map[string]bool{}
	for _, cs := range rec.changes() {
		for _, c := range cs {
			published[c.ID] = true
		}
	}
	lastCP := src.last()
	if lastCP == "" {
		t.Fatal("no checkpoint after a soft stop")
	}
	// Everything up to the checkpoint was published: the changes 1..k of
	// checkpoint p00000k, each of them, not just as many.
	k, _ := strconv.Atoi(string(lastCP[1:]))
	var missing []int
	for i := 1; i <= k; i++ {
		if !published[strconv.Itoa(i)] {
			missing = append(missing, i)
		}
	}
	if k == 0 || len(missing) > 0 {
		t.Fatalf("checkpoint %s but changes %v of 1..%d were not published", lastCP, missing, k)
	}
}

type lostErr struct{}

func (lostErr) Error() string   { return "lease lost" }
func (lostErr) LeaseLost() bool { return true }

// TestLeaseLostDropsInFlight: when the lease is lost the processor stops at
// once, without publishing the rest or checkpointing.
func TestLeaseLostDropsInFlight(t *testing.T) {
	src := &fakeSource{events: inserts(100, 1)}
	entered := make(chan struct{}, 100)
	never := make(chan struct{})
	rec := &recorder{fn: func(call int, b *publish.Batch) error {
		entered <- struct{}{}
		<-never // never completes on its own
		return nil
	}}
	pub := publish.PublisherFunc(func(ctx context.Context, b *publish.Batch) error {
		done := make(chan error, 1)
		go func() { done <- rec.Publish(ctx, b) }()
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	m, _ := publish.NewMapper([]publish.Mapping{{Collection: "c", Hub: "h", Method: "t"}}, publish.MapperOptions{})
	stop := start(t, src, pub, m, publish.PipelineConfig{})
	testkit.Recv(t, entered, 10*time.Second, "a batch to be in flight")
	stopped := make(chan error, 1)
	go func() { stopped <- stop(lostErr{}) }()
	testkit.Recv(t, stopped, 5*time.Second, "Run to return promptly after the lease was lost")
	if cp := src.last(); cp != "" {
		t.Fatalf("checkpointed %q after losing the lease", cp)
	}
	// Let the blocked test publisher goroutines finish.
	close(never)
	testkit.Until(t, 5*time.Second, "the test publisher to return", func() bool { return rec.returned() == rec.entered() })
}

// memShadow is a ShadowStore in memory that records every save.
type memShadow struct {
	mu    sync.Mutex
	saved []publish.ShadowRecord
}

func (m *memShadow) Load(ctx context.Context, key string) (publish.ShadowRecord, bool, error) {
	return publish.ShadowRecord{}, false, nil
}

func (m *memShadow) Save(ctx context.Context, recs []publish.ShadowRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.saved = append(m.saved, recs...)
	return nil
}

// TestShadowSavedOnlyUnderWatermark: a later version of a document that
// finishes first on another target is not stored while an earlier change
// of it (here v1, and the delete of the move at v2) is still unpublished,
// even when the watermark moves over other documents meanwhile; a restart
// would otherwise skip that delete as a replay.
func TestShadowSavedOnlyUnderWatermark(t *testing.T) {
	ch := func(id, v, g string) changefeed.Event {
		return changefeed.Event{Change: &changefeed.Change{Collection: "c", ID: id, Op: changefeed.Update, Version: v,
			After: map[string]any{"id": id, "g": g, "v": v}}, Position: changefeed.Position("p" + v)}
	}
	// y (to group c) comes first; then x: v1 to a, v2 moves it to b, v3 in b.
	src := &fakeSource{events: []changefeed.Event{ch("y", "0", "c"), ch("x", "1", "a"), ch("x", "2", "b"), ch("x", "3", "b")}}
	releaseA, releaseC := make(chan struct{}), make(chan struct{})
	var groupB sync.WaitGroup
	groupB.Add(2)
	rec := &recorder{fn: func(call int, b *publish.Batch) error {
		switch b.Audience.Group {
		case "a":
			<-releaseA
		case "c":
			<-releaseC
		case "b":
			groupB.Done()
		}
		return nil
	}}
	store := &memShadow{}
	m, _ := publish.NewMapper([]publish.Mapping{{Collection: "c", Hub: "h", Group: "{/g}", Method: "t"}},
		publish.MapperOptions{ShadowSize: 10, Store: store})
	stop := start(t, src, rec, m, publish.PipelineConfig{ShadowStore: store,
		Batch: publish.BatchLimits{MaxChanges: 1, MaxBytes: 1 << 16}})
	groupB.Wait() // x v2's upsert and x v3 are published; v3's change is complete
	close(releaseC)
	testkit.Until(t, 5*time.Second, "the watermark to move over y", func() bool { return src.last() == "p0" })
	store.mu.Lock()
	for _, r := range store.saved {
		if strings.HasSuffix(r.Key, "/x") {
			t.Errorf("saved x v%s while x v1 and the delete of the move wait for group a", r.V)
		}
	}
	store.mu.Unlock()
	close(releaseA)
	testkit.Until(t, 5*time.Second, "the watermark to reach x v3", func() bool { return src.last() == "p3" })
	if err := stop(nil); err != nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	var newest publish.ShadowRecord
	for _, r := range store.saved {
		if strings.HasSuffix(r.Key, "/x") && wire.CompareVersions(r.V, newest.V) > 0 {
			newest = r
		}
	}
	if newest.V != "3" || newest.Doc == nil || newest.Audience.Group != "b" {
		t.Fatalf("newest saved record of x %+v, want v3 in group b", newest)
	}
}

// chanSource emits what the test sends on events, then waits for ctx.
type chanSource struct {
	events chan changefeed.Event
	fakeSource
}

func (s *chanSource) Run(ctx context.Context, out chan<- changefeed.Event) error {
	for {
		select {
		case e := <-s.events:
			select {
			case out <- e:
			case <-ctx.Done():
				return nil
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// gate is a publisher whose calls block until released, recording when each
// call started (fake time under synctest) and its changes.
type gate struct {
	mu      sync.Mutex
	sizes   []int
	at      []time.Time
	release chan struct{}
}

func (g *gate) Publish(ctx context.Context, b *publish.Batch) error {
	g.mu.Lock()
	g.sizes = append(g.sizes, len(b.Envelope.Changes))
	g.at = append(g.at, time.Now())
	g.mu.Unlock()
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gate) calls() ([]int, []time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.sizes), slices.Clone(g.at)
}

// runGated runs a pipeline from a chanSource into a gate inside the
// current synctest bubble; stop ends it softly.
func runGated(t *testing.T, batch publish.BatchLimits) (src *chanSource, g *gate, stop func()) {
	src = &chanSource{events: make(chan changefeed.Event)}
	g = &gate{release: make(chan struct{})}
	m, err := publish.NewMapper([]publish.Mapping{{Collection: "c", Hub: "h", Group: "{/g}", Method: "t"}}, publish.MapperOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := changefeed.NewProcessor(changefeed.ProcessorConfig{Logger: slog.New(slog.DiscardHandler)}, src,
		publish.NewPipeline(pipelineConfig(publish.PipelineConfig{Batch: batch}), m, g))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	return src, g, func() {
		close(g.release)
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func emit(src *chanSource, evs ...changefeed.Event) {
	for _, e := range evs {
		src.events <- e
	}
}

// TestAdaptiveBatching: without a linger, a change to an idle audience is
// published at once (no time passes); changes that arrive while its batch
// is in flight are published together as soon as it completes.
func TestAdaptiveBatching(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src, g, stop := runGated(t, publish.BatchLimits{MaxChanges: 100, MaxBytes: 64 << 10})
		defer stop()
		start := time.Now()
		evs := inserts(5, 1)
		emit(src, evs[:2]...)
		synctest.Wait()
		sizes, at := g.calls()
		if len(sizes) != 1 || sizes[0] != 1 || !at[0].Equal(start) {
			t.Fatalf("first change: calls %v at %v, want one of 1 change at once", sizes, at)
		}
		emit(src, evs[2:]...)
		synctest.Wait()
		if sizes, _ := g.calls(); len(sizes) != 1 {
			t.Fatalf("published %v while the first batch was in flight", sizes)
		}
		g.release <- struct{}{}
		synctest.Wait()
		sizes, at = g.calls()
		if len(sizes) != 2 || sizes[1] != 4 || !at[1].Equal(start) {
			t.Fatalf("after completion: calls %v at %v, want the 4 waiting changes together at once", sizes, at)
		}
	})
}

// TestLinger: with MaxDelay, an idle audience's first change waits that
// long for company.
func TestLinger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src, g, stop := runGated(t, publish.BatchLimits{MaxChanges: 100, MaxBytes: 64 << 10, MaxDelay: 10 * time.Millisecond})
		defer stop()
		start := time.Now()
		evs := inserts(2, 1)
		emit(src, evs[:2]...)
		time.Sleep(3 * time.Millisecond)
		emit(src, evs[2:]...)
		synctest.Wait()
		if sizes, _ := g.calls(); len(sizes) != 0 {
			t.Fatalf("published %v before the linger ended", sizes)
		}
		time.Sleep(7 * time.Millisecond)
		synctest.Wait()
		sizes, at := g.calls()
		if len(sizes) != 1 || sizes[0] != 2 || at[0].Sub(start) != 10*time.Millisecond {
			t.Fatalf("calls %v at %v, want both changes together after 10ms", sizes, at)
		}
	})
}

// TestLagHistogramCountsChanges: every change the target accepts is
// observed once in changecast_e2e_lag_seconds, from its commit time.
func TestLagHistogramCountsChanges(t *testing.T) {
	const n = 40
	evs := inserts(n, 3)
	committed := time.Now().Add(-2 * time.Second)
	for _, e := range evs {
		if e.Change != nil {
			e.Change.CommitTime = committed
		}
	}
	src := &fakeSource{events: evs}
	reg := prometheus.NewRegistry()
	rec := &recorder{}
	run(t, src, rec, func() bool { return src.last() == changefeed.Position(fmt.Sprintf("p%06d", n)) },
		publish.PipelineConfig{Source: "test:src", Stream: "lease-0", Metrics: publish.NewMetrics(reg)})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var published float64
	var h *dto.Histogram
	for _, mf := range mfs {
		switch mf.GetName() {
		case "changecast_changes_published_total":
			published = mf.Metric[0].GetCounter().GetValue()
		case "changecast_e2e_lag_seconds":
			for _, m := range mf.Metric {
				if m.Label[0].GetValue() == "test:src" {
					h = m.GetHistogram()
				}
			}
		}
	}
	if h == nil {
		t.Fatalf("no changecast_e2e_lag_seconds{source=\"test:src\"} among the metrics")
	}
	if published != n || h.GetSampleCount() != n {
		t.Fatalf("lag histogram counted %d changes, %v were published; want %d", h.GetSampleCount(), published, n)
	}
	if avg := h.GetSampleSum() / n; avg < 2 || avg > 30 {
		t.Fatalf("mean lag %.3fs, want about 2s (commit 2s before the run)", avg)
	}
}
