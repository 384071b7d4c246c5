// Package cosmos reads an Azure Cosmos DB container's change feed with the
// azcosmos v1.5.0 SDK (ReadFeedRanges, ReadChangeFeed, composite
// continuation tokens) and runs it under leases: the change feed processor
// the Go SDK does not have.
//
// # Which type to use
//
//   - Container is the feed as a changefeed.Partitions: set Client,
//     Database, Container, Feed (start, poll interval, page size, soft
//     delete field), Processor and Leases, and hand it to
//     changefeed.NewRunner with that lease store (lease/cosmosstore,
//     lease/pgstore, or a memory store for one instance). It is also the
//     container's changefeed.Snapshotter. The first instance creates one lease per feed
//     range; instances share the ranges: leases are balanced, taken over
//     after an instance stops renewing, and split with the partitions.
//   - Feed reads one container for tools: Ranges, Leases (the
//     bootstrapper), ContinuationAt, Estimate (lag), Source (one lease).
//     ResetCheckpoints and Describe serve `changecast checkpoint reset` and
//     `changecast leases list` (package admin).
//
// # Positions
//
// A lease's continuation (and a changefeed.Position) is always an azcosmos
// composite continuation token, never a bare ETag: the SDK silently ignores
// a bare ETag and reads from the beginning. Each read rebuilds a
// single-range token for the lease's own range from the stored one, so a
// split child can start from its parent's token. The start option
// (beginning, now, a time) is written into each lease when it is created,
// "now" resolved at once to each range's current LSN; once leases exist
// the start option is ignored, and only a checkpoint reset changes where
// they resume. A time start is sent as StartFrom on the range's first read
// only (cosmos.md §1.3: azcosmos formats it with "UTC", which the service
// has not been verified to accept).
//
// # Reading
//
// Pages are read back to back while they hold changes; the poll interval is
// slept only after an empty read (HTTP 304). Changes carry their page's
// token on the last change of the page, so a checkpoint never passes an
// unpublished change; an empty read that moves the token (a "now" resolved,
// deletes) is recorded as a position alone. Failed reads (429 storms after
// the SDK's own retries, 503, timeouts) are retried with backoff without
// giving up the lease.
//
// A change's Version is the document's _lsn, its ID the id property (a
// mapping's key pointers override it), its CommitTime _ts. The
// change-feed-only and addressing properties _lsn, _rid, _self and
// _attachments are removed from the document; _etag and _ts stay.
//
// # Deletes
//
// The latest-version change feed has no deletes: a deleted document, or one
// removed by its TTL, simply stops appearing, and clients are not told. Use
// a soft delete: set FeedConfig.DeleteField (e.g. /_deleted) and write the
// flag before deleting (or let a TTL remove the flagged document later); a
// document whose flag is true becomes op delete.
//
// # Moves: the routing index
//
// The latest-version feed has no before-image, so a document that moves to
// another group would reach the new group only. With FeedConfig.RoutingIndex
// each Source keeps its range's document ids with the fields the mappings
// route and key by (RouteFields), seeded before the first read by one read
// of the range from the beginning: entries at or below the lease's
// checkpoint are what clients hold, entries above it unknown. A change then
// carries the held version's fields as Before (BeforeRoutes), or
// PrevUnknown, on which the mapper deletes the document from the whole hub.
// See route.go, and docs/cosmos.md for the costs.
//
// # Splits and merges
//
// A read whose returned token holds more than one range means the lease's
// range split. The page is dropped and the source returns a
// *lease.SplitError naming the child ranges; the Manager creates the child
// leases, which inherit the parent's last checkpoint, then deletes the
// parent. Merges keep both leases; azcosmos sends no EPK filter headers, so
// each reads the whole merged partition: duplicates, never loss.
//
// # Snapshots
//
// Container.Snapshot (changefeed.Snapshotter) reads a group's documents from
// the change feed, where _lsn, the stream's version, is: one logical
// partition's feed when the match is on the partition key path (its
// effective partition key computed with the service's version 2 hash), else
// every range's, from the beginning, filtering by the match's text. Each
// document is answered at a version the stream reads: one at or below the
// stream's checkpoint when the page began, or, for newer ones, after the
// stream published past the read and a re-read of the range's tail showed
// the document unchanged (the latest-version feed lets the stream skip
// versions, and a patch is computed from the last version it read). Pages
// wait until the streams published up to what they read; the positions come
// from Container.Leases, so any instance sharing the store can answer. See
// snapshot.go for the argument, docs/cosmos.md for the cost.
//
// # Lag
//
// Source.Lag (and the changecast_cosmos_lease_lag metric) is the session
// token's LSN minus the checkpoint's LSN, the .NET estimator's measure of
// changes not yet delivered; Feed.Estimate computes it for a lease from
// outside with one read of one item.
//
// # Concurrency
//
// Container, Feed and Metrics are safe for concurrent use. Each lease gets
// its own Source (and, in the worker, its own pipeline).
package cosmos
