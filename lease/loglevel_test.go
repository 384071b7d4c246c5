package lease_test

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/lease"
)

// runLogged runs a Manager holding one lease on store, logging to a
// buffer, and returns the buffer, how many times the worker started, and
// a stop function that waits for Run.
func runLogged(t *testing.T, store lease.Store, owner string) (*testkit.Buffer, *atomic.Int32, func()) {
	t.Helper()
	logs := &testkit.Buffer{}
	var starts atomic.Int32
	m, err := lease.NewManager(lease.Config{
		Store:           store,
		Prefix:          "p",
		Owner:           owner,
		AcquireInterval: 20 * time.Millisecond,
		RenewInterval:   50 * time.Millisecond,
		Expiry:          5 * time.Second,
		Logger:          slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Bootstrap: func(context.Context) ([]*lease.Lease, error) {
			return []*lease.Lease{lease.ForPartition("p", "slot")}, nil
		},
		Worker: lease.WorkerFunc(func(ctx context.Context, l *lease.Lease, cp lease.Checkpointer) error {
			starts.Add(1)
			<-ctx.Done()
			return nil
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := testkit.Go(t, func() error { return m.Run(ctx) })
	return logs, &starts, func() { cancel(); <-done }
}

// linesAt returns the log lines at level (text handler: level=WARN).
func linesAt(logs, level string) []string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "level="+level+" ") {
			out = append(out, l)
		}
	}
	return out
}

// A checkpoint reset rewrites the leases under their running owners; each
// owner restarts from the new position. That is the reset working, not a
// fault: one INFO line per lease, no WARN (it was "lease: lost; worker
// stopped without checkpointing" at WARN, a burst of them per reset).
func TestCheckpointResetIsNotAWarning(t *testing.T) {
	store := lease.NewMemoryStore()
	logs, starts, stop := runLogged(t, store, "pod-0")
	testkit.Until(t, 10*time.Second, "the worker starts", func() bool { return starts.Load() == 1 })

	ls, err := store.List(context.Background(), "p"+lease.Separator)
	if err != nil || len(ls) != 1 {
		t.Fatalf("list: %v %v", ls, err)
	}
	if _, err := store.Checkpoint(context.Background(), ls[0], "reset-position"); err != nil {
		t.Fatal(err)
	}
	testkit.Until(t, 10*time.Second, "the worker restarts after the reset", func() bool { return starts.Load() == 2 })
	stop()

	s := logs.String()
	if w := append(linesAt(s, "WARN"), linesAt(s, "ERROR")...); len(w) > 0 {
		t.Errorf("a checkpoint reset logged at WARN or ERROR:\n%s", strings.Join(w, "\n"))
	}
	if n := strings.Count(s, "rewritten by another writer"); n != 1 {
		t.Errorf("%d lines about the rewrite, want 1:\n%s", n, s)
	}
}

// A lease taken by another instance (a restarted pod taking its leases
// back, balancing) is INFO on the instance that lost it.
func TestLeaseTakenIsNotAWarning(t *testing.T) {
	store := lease.NewMemoryStore()
	logs, starts, stop := runLogged(t, store, "pod-0")
	testkit.Until(t, 10*time.Second, "the worker starts", func() bool { return starts.Load() == 1 })
	ls, _ := store.List(context.Background(), "p"+lease.Separator)
	if _, err := store.Acquire(context.Background(), ls[0], "pod-1", lease.AcquireOptions{Steal: true}); err != nil {
		t.Fatal(err)
	}
	testkit.Until(t, 10*time.Second, "the loss is noticed", func() bool { return strings.Contains(logs.String(), "taken by another instance") })
	stop()
	s := logs.String()
	if w := append(linesAt(s, "WARN"), linesAt(s, "ERROR")...); len(w) > 0 {
		t.Errorf("a lease taken by another instance logged at WARN or ERROR:\n%s", strings.Join(w, "\n"))
	}
}
