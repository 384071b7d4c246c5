// Package lease coordinates which instance reads which part of a change
// feed, and where each part resumes, the way the .NET and Java Cosmos DB
// change feed processors do (lease documents, compare-and-set writes,
// equal-partitions balancing).
//
// # Which type to use
//
//   - A source (the Cosmos or PostgreSQL change feed) runs a Manager:
//     NewManager(Config{Store, Prefix, Worker, Bootstrap}) and then
//     Run(ctx). It supplies a Bootstrapper that lists the initial leases
//     (ForRange per Cosmos feed range, ForPartition for a PostgreSQL slot)
//     and a Worker that reads one lease's range and checkpoints through the
//     Checkpointer it is given.
//   - A Store keeps the leases: NewMemoryStore for a single node (the
//     default, and tests); lease/pgstore for a PostgreSQL table shared by
//     instances; a Cosmos lease container later. Tools that only inspect or
//     reset leases (changecast leases list, checkpoint reset) use a Store
//     directly.
//   - lease/leasetest holds the contract suite every Store must pass.
//
// # Leases
//
// A Lease names a range by Prefix+".."+Token, as the .NET processor does,
// and carries its Owner, its Continuation (opaque: a Cosmos continuation or
// a PostgreSQL LSN) and a Timestamp refreshed by every write. Its JSON form is
// the .NET/Java lease document, so existing tools can read it. Every Store
// write is a compare-and-set on the lease's ETag: of two instances racing for
// one lease exactly one wins, and the loser gets an error for which
// IsConflict (and, if it had owned the lease, IsLost) is true.
//
// Expiry is decided on the store's clock (Lease.ReadAt against
// Lease.Timestamp; the PostgreSQL store uses now() of the database), so
// instances with skewed clocks agree on it. A holder also watches its own
// monotonic clock: if no write has succeeded for the expiry interval it
// treats the lease as lost, because another instance may hold it by now.
//
// # Bootstrapping
//
// The first Manager of a processor to start takes the lock lease
// "{Prefix}.lock", calls the Bootstrapper and creates its leases unowned
// with empty continuations (the source's start position applies to them),
// then writes "{Prefix}.info"; other instances wait for ".info". Leases that
// exist already are never overwritten, and none are created if any exist
// without a lock, so start options are ignored once leases exist. A
// bootstrapper that dies leaves its lock; once the lock expires the next
// instance completes the set.
//
// # Manager
//
// Every AcquireInterval (13 s) the Manager lists the leases and takes its
// fair share: leases it still owns from before a restart, then unowned or
// expired ones, and only when none is free it steals one lease per cycle
// from the most loaded instance. It renews held leases every RenewInterval
// (17 s); a lease not renewed for Expiry (60 s) is free. These are the
// .NET/Java defaults.
//
// Each held lease runs Worker.Work in its own goroutine. When the lease is
// lost (a renew or checkpoint is refused, a listing shows another owner, or
// renewals fail for the expiry interval) the worker's context is cancelled
// with a LostError as its cause and every further Checkpoint fails with it:
// whatever the worker had in flight is dropped unacknowledged and the new
// owner reads it again from the last checkpoint. Delivery is therefore at
// least once: a stolen or expired lease produces duplicates, never a gap.
//
// On graceful shutdown (Run's ctx done) workers are cancelled with cause
// ErrShutdown, may checkpoint what they finished, and once each returns its
// lease is released so another instance takes it at its next cycle instead
// of after the expiry.
//
// # Single active consumer
//
// With one lease (ForPartition(prefix, slotName)) the Manager is a leader
// election: the holder streams, a standby never steals it (one lease cannot
// be more balanced) and takes it over within the expiry interval after the
// holder stops renewing, or at its next cycle after a graceful release.
//
// # Splits
//
// A Worker whose Cosmos range has split returns a *SplitError listing the
// child ranges. The Manager creates the children, each inheriting the
// parent's last checkpointed continuation unless the worker set one, owned
// by this instance, and deletes the parent only after every child exists.
// A crash in between leaves the parent and some children: the parent's next
// owner finds the split again, its creates of existing children are ignored
// and it deletes the parent. Until then parent and children overlap, which
// yields duplicates and loses nothing.
//
// # Merges
//
// Cosmos may merge physical partitions. Range leases (schema version 1)
// then keep their ranges: two leases map into one physical partition and,
// because azcosmos v1.5.0 sends no EPK filter headers, each reads the whole
// merged partition from its own continuation. Both deliver every change of
// the merged partition, so merges produce duplicates (at most the whole
// merged partition twice), never loss. Clients dedupe by document version;
// a source that adds EPK filter headers removes the duplicates. This
// package creates or deletes no lease on a merge.
//
// # Concurrency
//
// Stores and the Manager are safe for concurrent use. A Checkpointer belongs
// to one worker; its calls are serialised with each other and with the
// lease's renewals, and the last one wins, so a worker that checkpoints from
// several goroutines must itself pass positions in order.
package lease
