package testkit

import (
	"testing"
	"time"
)

// Eventually polls cond until it returns "" or timeout passes; then it
// fails the test with what and cond's last answer (which says what is still
// missing). Tests wait for a state with it instead of sleeping and hoping.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", timeout, what, msg)
		}
		time.Sleep(wait)
		wait = min(wait*2, 50*time.Millisecond)
	}
}

// Until is Eventually for a plain condition.
func Until(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	Eventually(t, timeout, what, func() string {
		if cond() {
			return ""
		}
		return "not yet"
	})
}

// Go runs fn on its own goroutine and returns a channel that receives its
// result. When the test ends, Go waits for fn (up to a minute, then it
// fails the test): a test never leaves a goroutine behind, so goleak stays
// quiet and a hung part is reported where it hangs. Cancel whatever fn
// waits on (its context) in a t.Cleanup registered after Go, or read the
// channel, before the test returns.
func Go(t testing.TB, fn func() error) <-chan error {
	t.Helper()
	out := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		out <- fn()
	}()
	t.Cleanup(func() {
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Errorf("a background part did not return within a minute of the test's end")
		}
	})
	return out
}

// Recv waits for a value on ch for at most timeout, failing the test with
// what otherwise.
func Recv[T any](t testing.TB, ch <-chan T, timeout time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
		panic("unreachable")
	}
}
