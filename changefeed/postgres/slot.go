package postgres

import (
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"context"
	"sync/atomic"
	"time"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/lease"
)

// Slot is a replication slot as a changefeed.Partitions: one lease, so the
// changefeed.Runner is a leader election (single active consumer). With a
// shared lease store (lease/pgstore) a standby instance takes the stream
// over within the lease expiry; with lease.NewMemoryStore the one instance
// streams at once.
type Slot struct {
	Config Config
	// Processor names the consumer group: the lease id is
	// Processor + lease.Separator + the slot name.
	Processor string

	current atomic.Pointer[Source] // the source streaming now, if any
	wins    windows                // snapshot windows the stream reports to
	poolMu  sync.Mutex
	pool    *pgxpool.Pool // snapshot reads; see Close
}

// Open returns the lease prefix (the processor's name); the slot itself
// is created by the source when it first connects.
func (s *Slot) Open(context.Context) (string, error) { return s.Processor, nil }

// Bootstrap returns the slot's one lease.
func (s *Slot) Bootstrap(_ context.Context, prefix string) ([]*lease.Lease, error) {
	return []*lease.Lease{lease.ForPartition(prefix, s.Config.Slot)}, nil
}

// Source returns a source for the holder of the lease. The slot's
// confirmed_flush_lsn is the stream's position; the lease also records it
// (at most once a second), so `changecast leases list` shows where the
// slot is.
func (s *Slot) Source(l *lease.Lease, cp lease.Checkpointer) (changefeed.Source, error) {
	src := New(s.Config)
	src.wins = &s.wins
	if l != nil {
		src.resumeFrom = l.Continuation
	}
	return &leasedSource{Source: src, cp: cp, slot: s}, nil
}

type leasedSource struct {
	*Source
	cp   lease.Checkpointer
	slot *Slot
	last atomic.Int64 // unix nanoseconds of the last lease write
}

// Run streams, and is the slot's current source (for snapshots) while it
// runs.
func (s *leasedSource) Run(ctx context.Context, out chan<- changefeed.Event) error {
	s.slot.current.Store(s.Source)
	defer s.slot.current.CompareAndSwap(s.Source, nil)
	return s.Source.Run(ctx, out)
}

func (s *leasedSource) Checkpoint(ctx context.Context, pos changefeed.Position) error {
	if err := s.Source.Checkpoint(ctx, pos); err != nil {
		return err
	}
	now := time.Now().UnixNano()
	if now-s.last.Load() < int64(time.Second) {
		return nil
	}
	s.last.Store(now)
	return s.cp.Checkpoint(ctx, string(pos))
}
