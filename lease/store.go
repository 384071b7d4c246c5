package lease

import (
	"context"
	"time"
)

// Store keeps leases. Every write is a compare-and-set on the ETag of the
// copy passed in: it succeeds only if the stored lease is still that copy,
// returns the new copy (new ETag, Timestamp and ReadAt from the store's
// clock), and never changes the caller's copy. A refused write returns an
// error for which IsConflict is true, and IsLost too when the caller's owner
// no longer holds the lease. Other errors (network, timeouts) leave the
// outcome unknown: the write may or may not have happened.
//
// Stores must be safe for concurrent use. They know nothing about balancing;
// the Manager decides what to write.
type Store interface {
	// List returns every lease whose ID starts with prefix, ordered by ID.
	List(ctx context.Context, prefix string) ([]*Lease, error)
	// Create stores a new lease as given (Owner included). If the ID exists
	// it fails with a ConflictError of ReasonExists, so concurrent creators
	// of the same lease agree on one.
	Create(ctx context.Context, l *Lease) (*Lease, error)
	// Acquire makes owner the owner of l. Besides the ETag check it refuses
	// (ReasonOwned) a lease held by another owner whose last write is no
	// older than opts.Expiry on the store's clock, unless opts.Steal.
	// Acquiring a lease the caller already owns is allowed (re-taking own
	// leases after a restart).
	Acquire(ctx context.Context, l *Lease, owner string, opts AcquireOptions) (*Lease, error)
	// Renew refreshes l's Timestamp so that it does not expire.
	Renew(ctx context.Context, l *Lease) (*Lease, error)
	// Checkpoint sets l's Continuation and refreshes its Timestamp.
	Checkpoint(ctx context.Context, l *Lease, continuation string) (*Lease, error)
	// Release clears l's Owner so that anyone may take it at once. Releasing
	// a lease that no longer exists succeeds (a split deleted it).
	Release(ctx context.Context, l *Lease) error
	// Delete removes l. Deleting a lease that no longer exists succeeds, so
	// that a repeated split finishes.
	Delete(ctx context.Context, l *Lease) error
}

// AcquireOptions qualify Store.Acquire.
type AcquireOptions struct {
	// Expiry is how long an owner's last write protects the lease.
	// Default DefaultExpiry.
	Expiry time.Duration
	// Steal takes the lease even from a live owner. Balancing uses it to
	// move one lease from an overloaded instance; that instance finds out
	// at its next renew or checkpoint.
	Steal bool
}

// ExpiryOrDefault returns o.Expiry, or DefaultExpiry when it is zero.
func (o AcquireOptions) ExpiryOrDefault() time.Duration {
	if o.Expiry <= 0 {
		return DefaultExpiry
	}
	return o.Expiry
}

// Defaults of the .NET and Java change feed processors (cosmos.md §3.3).
const (
	DefaultAcquireInterval = 13 * time.Second
	DefaultRenewInterval   = 17 * time.Second
	DefaultExpiry          = 60 * time.Second
)
