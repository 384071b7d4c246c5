package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/schema/config"
	"github.com/changecast/changecast/schema/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeSource emits a fixed list of events, then waits for ctx.
type fakeSource struct {
	events []changefeed.Event
	mu     sync.Mutex
	cps    []changefeed.Position
	n      int
}

func (s *fakeSource) sent() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func (s *fakeSource) Run(ctx context.Context, out chan<- changefeed.Event) error {
	for _, e := range s.events {
		select {
		case out <- e:
			s.mu.Lock()
			s.n++
			s.mu.Unlock()
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
	fn      func(call int, b *publish.Batch) error
}

func (r *recorder) Publish(ctx context.Context, b *publish.Batch) error {
	r.mu.Lock()
	r.calls++
	call := r.calls
	r.mu.Unlock()
	if r.fn != nil {
		if err := r.fn(call, b); err != nil {
			return err
		}
	}
	r.mu.Lock()
	r.batches = append(r.batches, b)
	r.mu.Unlock()
	return nil
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

func run(t *testing.T, src *fakeSource, pub publish.Publisher, until func() bool, cfg Config) {
	t.Helper()
	m, err := publish.NewMapper([]config.Mapping{{Collection: "c", Hub: "h", Group: "{/g}", Method: "t"}}, publish.MapperOptions{ShadowSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.MaxBackoff = 20 * time.Millisecond
	if cfg.Batch.MaxChanges == 0 {
		cfg.Batch = publish.BatchLimits{MaxChanges: 10, MaxBytes: 64 << 10, MaxDelay: time.Millisecond}
	}
	p := New(cfg, src, m, pub)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for !until() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
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
	run(t, src, rec, func() bool { return src.last() == "p000500" }, Config{Parallelism: 4})
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
		case b.Envelope.Changes[0].ID == "7" && b.Envelope.Changes[0].Op != wire.OpRefetch:
			return publish.Permanent(errors.New("400 poison"))
		}
		return nil
	}}
	run(t, src, rec, func() bool { return src.last() == "p000060" }, Config{})
	got := rec.changes()
	checkOrdered(t, got, 60)
	found := false
	for _, c := range got["1"] {
		if c.ID == "7" {
			found = c.Op == wire.OpRefetch && c.Reason == "publish_failed"
		}
	}
	if !found {
		t.Fatalf("poison change 7 not turned into a refetch marker: %+v", got["1"])
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
	}, Config{})
	got := rec.changes()
	n := 0
	for _, cs := range got {
		n += len(cs)
	}
	lastCP := src.last()
	if lastCP == "" {
		t.Fatal("no checkpoint after a soft stop")
	}
	// Everything up to the checkpoint was published.
	want, _ := strconv.Atoi(string(lastCP[1:]))
	if n < want {
		t.Fatalf("checkpoint %s but only %d changes published", lastCP, n)
	}
}

func TestBackpressure(t *testing.T) {
	src := &fakeSource{events: inserts(1000, 1)}
	block := make(chan struct{})
	var sentWhileBlocked int
	rec := &recorder{fn: func(call int, b *publish.Batch) error {
		<-block
		return nil
	}}
	go func() {
		time.Sleep(300 * time.Millisecond)
		sentWhileBlocked = src.sent()
		close(block)
	}()
	run(t, src, rec, func() bool { return src.last() == "p001000" }, Config{MaxPending: 50})
	// Reading pauses at MaxPending events; the buffers between the stages
	// are the only other slack.
	if sentWhileBlocked == 0 || sentWhileBlocked > 50+eventBuffer+mappedBuffer+3 {
		t.Fatalf("source sent %d events while the target was blocked (MaxPending 50)", sentWhileBlocked)
	}
	checkOrdered(t, rec.changes(), 1000)
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
	m, _ := publish.NewMapper([]config.Mapping{{Collection: "c", Hub: "h", Method: "t"}}, publish.MapperOptions{})
	p := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Batch: publish.BatchLimits{MaxChanges: 10, MaxBytes: 1 << 16, MaxDelay: time.Millisecond}}, src, m, pub)
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	<-entered
	cancel(lostErr{})
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return promptly after the lease was lost")
	}
	if cp := src.last(); cp != "" {
		t.Fatalf("checkpointed %q after losing the lease", cp)
	}
	// Let the blocked test publisher goroutines finish before goleak looks.
	close(never)
	time.Sleep(10 * time.Millisecond)
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

func (m *memShadow) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.saved)
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
	m, _ := publish.NewMapper([]config.Mapping{{Collection: "c", Hub: "h", Group: "{/g}", Method: "t"}},
		publish.MapperOptions{ShadowSize: 10, Store: store})
	p := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ShadowStore: store,
		Batch: publish.BatchLimits{MaxChanges: 1, MaxBytes: 1 << 16, MaxDelay: time.Millisecond}}, src, m, rec)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	groupB.Wait() // x v2's upsert and x v3 are published; v3's change is complete
	close(releaseC)
	for deadline := time.Now().Add(5 * time.Second); src.last() != "p0" && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if src.last() != "p0" {
		t.Fatalf("watermark did not move over y: %q", src.last())
	}
	store.mu.Lock()
	for _, r := range store.saved {
		if strings.HasSuffix(r.Key, "/x") {
			t.Errorf("saved x v%s while x v1 and the delete of the move wait for group a", r.V)
		}
	}
	store.mu.Unlock()
	close(releaseA)
	for deadline := time.Now().Add(5 * time.Second); src.last() != "p3" && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
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
