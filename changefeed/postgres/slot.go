package postgres

import (
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
func (s *Slot) Source(_ *lease.Lease, cp lease.Checkpointer) (changefeed.Source, error) {
	return &leasedSource{Source: New(s.Config), cp: cp}, nil
}

type leasedSource struct {
	*Source
	cp   lease.Checkpointer
	last atomic.Int64 // unix nanoseconds of the last lease write
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
