package changefeed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The processor's own rules, with a fake source and a fake consumer; the
// publish package tests it with the real pipeline.

// fakeSource emits events, then waits for ctx, or fails with err.
type fakeSource struct {
	events []Event
	err    error

	mu   sync.Mutex
	sent int
	cps  []Position
	log  *[]string // shared with a consumer: the order of commits and checkpoints
}

func (s *fakeSource) Run(ctx context.Context, out chan<- Event) error {
	for _, e := range s.events {
		select {
		case out <- e:
			s.mu.Lock()
			s.sent++
			s.mu.Unlock()
		case <-ctx.Done():
			return nil
		}
	}
	if s.err != nil {
		return s.err
	}
	<-ctx.Done()
	return nil
}

func (s *fakeSource) Checkpoint(_ context.Context, p Position) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cps = append(s.cps, p)
	if s.log != nil {
		*s.log = append(*s.log, "checkpoint "+string(p))
	}
	return nil
}

func (s *fakeSource) state() (sent int, cps []Position) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent, slices.Clone(s.cps)
}

func (s *fakeSource) last() Position {
	_, cps := s.state()
	if len(cps) == 0 {
		return ""
	}
	return cps[len(cps)-1]
}

// changes is n events, each a change with its own position "p<i>".
func changes(n int) []Event {
	evs := make([]Event, n)
	for i := range evs {
		evs[i] = Event{Change: &Change{Collection: "c", ID: fmt.Sprint(i), Op: Insert, Version: fmt.Sprint(i + 1)},
			Position: Position(fmt.Sprintf("p%04d", i+1))}
	}
	return evs
}

// fakeConsumer keeps what it receives and acknowledges it when told.
type fakeConsumer struct {
	mu    sync.Mutex
	got   []Delivery
	ack   func(...uint64)
	ended bool
	// auto acknowledges every delivery on receipt (for tests of other
	// rules).
	auto bool
	// hang makes Consume ignore the end of in and wait for ctx.
	hang bool
	// finish, when set, is waited for once in is closed (the consumer
	// still publishing what it has).
	finish chan struct{}
	log    *[]string
}

func (c *fakeConsumer) Consume(ctx context.Context, in <-chan Delivery, ack func(...uint64)) error {
	c.mu.Lock()
	c.ack = ack
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.ended = true
		c.mu.Unlock()
	}()
	for {
		select {
		case d, ok := <-in:
			if !ok {
				if c.hang {
					<-ctx.Done()
				}
				if c.finish != nil {
					select {
					case <-c.finish:
					case <-ctx.Done():
					}
				}
				return nil
			}
			c.mu.Lock()
			c.got = append(c.got, d)
			c.mu.Unlock()
			if c.auto {
				ack(d.Seq)
			}
		case <-ctx.Done():
			return nil
		}
	}
}

func (c *fakeConsumer) Commit(_ context.Context, below uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.log != nil {
		*c.log = append(*c.log, fmt.Sprintf("commit %d", below))
	}
}

// acknowledge acks the deliveries at the given indexes of got.
func (c *fakeConsumer) acknowledge(idx ...int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, i := range idx {
		c.ack(c.got[i].Seq)
	}
}

func (c *fakeConsumer) received() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

type lostErr struct{}

func (lostErr) Error() string   { return "lease lost" }
func (lostErr) LeaseLost() bool { return true }

// TestCheckpointIsTheAcknowledgedPrefix: acknowledgements in any order move
// the checkpoint only over a contiguous prefix, and Commit precedes every
// checkpoint.
func TestCheckpointIsTheAcknowledgedPrefix(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var order []string
		src := &fakeSource{events: changes(5), log: &order}
		con := &fakeConsumer{log: &order}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- NewProcessor(ProcessorConfig{Logger: quiet()}, src, con).Run(ctx) }()
		synctest.Wait()
		if n := con.received(); n != 5 {
			t.Fatalf("consumer got %d changes, want 5", n)
		}
		con.acknowledge(1, 2, 4)
		synctest.Wait()
		if cp := src.last(); cp != "" {
			t.Fatalf("checkpointed %q while change 1 is unacknowledged", cp)
		}
		con.acknowledge(0)
		synctest.Wait()
		if cp := src.last(); cp != "p0003" {
			t.Fatalf("checkpoint %q, want p0003 (change 4 still open)", cp)
		}
		con.acknowledge(3)
		synctest.Wait()
		if cp := src.last(); cp != "p0005" {
			t.Fatalf("checkpoint %q, want p0005", cp)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		for i, e := range order {
			if strings.HasPrefix(e, "checkpoint") && (i == 0 || !strings.HasPrefix(order[i-1], "commit")) {
				t.Fatalf("checkpoint without a commit before it: %q", order)
			}
		}
		if order[len(order)-2] != "commit 5" {
			t.Fatalf("the last commit covers %q, want every change (below 5)", order)
		}
	})
}

// TestPositionsAloneNeedNoConsumer: a position with no change (a commit, a
// heartbeat) is checkpointed once everything before it is, and never
// reaches the consumer.
func TestPositionsAloneNeedNoConsumer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		evs := append(changes(1), Event{Position: "q1"}, Event{Position: "q2"})
		src := &fakeSource{events: evs}
		con := &fakeConsumer{}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- NewProcessor(ProcessorConfig{Logger: quiet()}, src, con).Run(ctx) }()
		synctest.Wait()
		if src.last() != "" || con.received() != 1 {
			t.Fatalf("checkpoint %q with the change unacknowledged; consumer got %d", src.last(), con.received())
		}
		con.acknowledge(0)
		synctest.Wait()
		if cp := src.last(); cp != "q2" {
			t.Fatalf("checkpoint %q, want q2", cp)
		}
		cancel()
		<-done
	})
}

// TestBackpressure: with nothing acknowledged, reading stops at MaxPending
// changes plus the source's channel buffer, and resumes as acks arrive.
func TestBackpressure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{events: changes(2000)}
		con := &fakeConsumer{}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- NewProcessor(ProcessorConfig{Logger: quiet(), MaxPending: 50}, src, con).Run(ctx) }()
		synctest.Wait()
		if sent, _ := src.state(); sent != 50+eventBuffer {
			t.Fatalf("source sent %d events with nothing acknowledged, want MaxPending 50 + buffer %d", sent, eventBuffer)
		}
		if n := con.received(); n != 50 {
			t.Fatalf("consumer holds %d changes, want 50", n)
		}
		con.mu.Lock()
		con.auto = true
		con.mu.Unlock()
		con.acknowledge(0)
		synctest.Wait()
		// One slot freed, one more read; then auto-acks drain the rest.
		for src.last() != "p2000" {
			con.mu.Lock()
			for _, d := range con.got {
				con.ack(d.Seq)
			}
			con.mu.Unlock()
			synctest.Wait()
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// TestSoftStopWaitsForTheConsumer: a soft stop closes the consumer's input,
// waits for it to finish, then checkpoints what it acknowledged.
func TestSoftStopWaitsForTheConsumer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{events: changes(10)}
		con := &fakeConsumer{finish: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- NewProcessor(ProcessorConfig{Logger: quiet()}, src, con).Run(ctx) }()
		synctest.Wait()
		cancel()
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("Run returned before the consumer finished")
		default:
		}
		con.acknowledge(0, 1, 2, 3, 4, 5, 6, 7, 8, 9)
		close(con.finish)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if cp := src.last(); cp != "p0010" {
			t.Fatalf("final checkpoint %q, want p0010", cp)
		}
	})
}

// TestDrainTimeout: a consumer that does not finish is stopped hard after
// DrainTimeout; what it acknowledged is still checkpointed.
func TestDrainTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{events: changes(3)}
		con := &fakeConsumer{hang: true}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() {
			done <- NewProcessor(ProcessorConfig{Logger: quiet(), DrainTimeout: time.Minute}, src, con).Run(ctx)
		}()
		synctest.Wait()
		con.acknowledge(0)
		start := time.Now()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited != time.Minute {
			t.Fatalf("stopped after %v, want the drain timeout (1m)", waited)
		}
		if cp := src.last(); cp != "p0001" {
			t.Fatalf("checkpoint %q, want p0001", cp)
		}
	})
}

// TestLeaseLostStopsAtOnce: when the lease is lost the consumer is stopped
// at once and nothing more is checkpointed, not even acknowledgements that
// arrive meanwhile.
func TestLeaseLostStopsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{events: changes(3)}
		con := &fakeConsumer{hang: true}
		ctx, cancel := context.WithCancelCause(context.Background())
		done := make(chan error)
		go func() {
			done <- NewProcessor(ProcessorConfig{Logger: quiet(), DrainTimeout: time.Hour}, src, con).Run(ctx)
		}()
		synctest.Wait()
		start := time.Now()
		cancel(lostErr{})
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("Run took %v after the lease was lost", d)
		}
		con.mu.Lock()
		ended := con.ended
		con.mu.Unlock()
		if !ended {
			t.Fatal("consumer still running")
		}
		if cp := src.last(); cp != "" {
			t.Fatalf("checkpointed %q after losing the lease", cp)
		}
	})
}

// TestSourceFailure: a failing source is drained like a soft stop and its
// error returned.
func TestSourceFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		boom := errors.New("boom")
		src := &fakeSource{events: changes(2), err: boom}
		con := &fakeConsumer{auto: true}
		err := NewProcessor(ProcessorConfig{Logger: quiet()}, src, con).Run(context.Background())
		if !errors.Is(err, boom) {
			t.Fatalf("Run = %v, want the source's error", err)
		}
		if cp := src.last(); cp != "p0002" {
			t.Fatalf("checkpoint %q, want p0002", cp)
		}
	})
}
