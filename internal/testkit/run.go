package testkit

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Run starts a component's blocking run(ctx) on its own goroutine and
// returns stop, which cancels ctx, waits for run to return (up to a
// minute) and returns its error; later calls return the same error. When
// the test ends, stop is called and a non-nil error fails the test, so a
// component that does not shut down cleanly is reported where it was
// started. Call stop before the test ends to stop it earlier (e.g. to
// simulate a worker going away) and check its error yourself.
func Run(t testing.TB, run func(ctx context.Context) error) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(time.Minute):
				err = fmt.Errorf("did not return within a minute of its stop")
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("background Run: %v", err)
		}
	})
	return stop
}
