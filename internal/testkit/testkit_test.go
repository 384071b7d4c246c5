package testkit

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// fakeT records what a helper reports; Fatal and Skip end the goroutine
// as they do on a real test.
type fakeT struct {
	testing.TB
	failed, skipped string
	errors          []string
	cleanups        []func()
}

func (f *fakeT) Helper()           {}
func (f *fakeT) Name() string      { return "fake" }
func (f *fakeT) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeT) Errorf(format string, args ...any) {
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}
func (f *fakeT) Fatal(args ...any) { f.failed = fmt.Sprint(args...); runtime.Goexit() }
func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fakeT) Skip(args ...any) { f.skipped = fmt.Sprint(args...); runtime.Goexit() }
func (f *fakeT) Skipf(format string, args ...any) {
	f.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// inFake runs body against a fakeT on its own goroutine (so Goexit ends
// only body), then runs the cleanups as the testing package would.
func inFake(body func(t testing.TB)) *fakeT {
	f := &fakeT{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		body(f)
	}()
	<-done
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
	return f
}

func TestEventually(t *testing.T) {
	calls := 0
	f := inFake(func(tb testing.TB) {
		Eventually(tb, 5*time.Second, "the third call", func() string {
			calls++
			if calls < 3 {
				return fmt.Sprintf("call %d", calls)
			}
			return ""
		})
	})
	if f.failed != "" || calls != 3 {
		t.Fatalf("failed %q after %d calls, want success on the third", f.failed, calls)
	}

	start := time.Now()
	f = inFake(func(tb testing.TB) {
		Eventually(tb, 30*time.Millisecond, "the rows", func() string { return "2 of 3 rows" })
		tb.Errorf("Eventually returned after its timeout")
	})
	if !strings.Contains(f.failed, "waiting for the rows: 2 of 3 rows") || len(f.errors) > 0 {
		t.Fatalf("failure %q %v, want it to name what and the last answer", f.failed, f.errors)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("gave up after %v, before its timeout", d)
	}
}

func TestUntil(t *testing.T) {
	f := inFake(func(tb testing.TB) { Until(tb, 20*time.Millisecond, "never", func() bool { return false }) })
	if !strings.Contains(f.failed, "waiting for never") {
		t.Fatalf("failure %q", f.failed)
	}
	if f := inFake(func(tb testing.TB) { Until(tb, time.Second, "now", func() bool { return true }) }); f.failed != "" {
		t.Fatalf("failure %q", f.failed)
	}
}

func TestRecv(t *testing.T) {
	ch := make(chan int, 1)
	ch <- 7
	var got int
	if f := inFake(func(tb testing.TB) { got = Recv(tb, ch, time.Second, "seven") }); f.failed != "" || got != 7 {
		t.Fatalf("got %d, failure %q", got, f.failed)
	}
	f := inFake(func(tb testing.TB) { Recv(tb, ch, 10*time.Millisecond, "an empty channel") })
	if !strings.Contains(f.failed, "waiting for an empty channel") {
		t.Fatalf("failure %q", f.failed)
	}
}

func TestGoJoinsAtTheEnd(t *testing.T) {
	release := make(chan struct{})
	var finished bool
	f := inFake(func(tb testing.TB) {
		Go(tb, func() error { <-release; finished = true; return nil })
		tb.Cleanup(func() { close(release) }) // runs before Go's join
	})
	if !finished || len(f.errors) > 0 {
		t.Fatalf("the goroutine was not joined: finished %v, errors %v", finished, f.errors)
	}
}

func TestRun(t *testing.T) {
	// A component that stops cleanly: stop returns nil, the end of the test
	// reports nothing.
	var stopped bool
	f := inFake(func(tb testing.TB) {
		Run(tb, func(ctx context.Context) error { <-ctx.Done(); stopped = true; return nil })
	})
	if !stopped || len(f.errors) > 0 {
		t.Fatalf("stopped %v, errors %v", stopped, f.errors)
	}
	// One that fails on its way out: stop returns the error, every time,
	// and the end of the test reports it.
	boom := errors.New("boom")
	var first, second error
	f = inFake(func(tb testing.TB) {
		stop := Run(tb, func(ctx context.Context) error { <-ctx.Done(); return boom })
		first, second = stop(), stop()
	})
	if first != boom || second != boom || len(f.errors) != 1 || !strings.Contains(f.errors[0], "boom") {
		t.Fatalf("stop: %v, %v; reported %v", first, second, f.errors)
	}
}

func TestGates(t *testing.T) {
	t.Setenv("CHANGECAST_PG_URL", "")
	f := inFake(func(tb testing.TB) { Postgres(tb) })
	if testing.Short() {
		if !strings.Contains(f.skipped, "PostgreSQL") || f.failed != "" {
			t.Fatalf("under -short: skipped %q, failed %q", f.skipped, f.failed)
		}
	} else if !strings.Contains(f.failed, "CHANGECAST_PG_URL is not set") {
		t.Fatalf("without -short and without a cluster: failed %q, want the hint", f.failed)
	}
	f = inFake(func(tb testing.TB) { NeedNode(tb, "test/node", "no-such-package-for-testkit") })
	if testing.Short() {
		if !strings.Contains(f.skipped, "Node.js") {
			t.Fatalf("under -short: skipped %q, failed %q", f.skipped, f.failed)
		}
	} else if !strings.Contains(f.failed, "no-such-package-for-testkit") && !strings.Contains(f.failed, "node is not installed") {
		t.Fatalf("a missing package: failed %q", f.failed)
	}
}
