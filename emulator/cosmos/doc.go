// Package cosmos is changecast's Azure Cosmos DB emulator: an in-memory
// gateway that speaks the REST wire protocol the official SDKs use, so the
// real github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos client and
// @azure/cosmos (for the calls it supports) run against it. It is what
// `changecast emulate cosmos` serves. No Cosmos DB emulator supports the
// change feed without Docker; this one exists for that.
//
// # Which type to start from
//
// Start from Server. Build one with NewServer and serve its Handler on a
// listener of your own:
//
//	srv, err := cosmos.NewServer(cosmos.WithPartitions(4), cosmos.WithAdminRoutes(true))
//	if err != nil { … }
//	http.Serve(ln, srv.Handler())
//
// Clients reach it with the endpoint of that listener and srv.Key()
// (DefaultKey, the well-known key of Microsoft's emulator, unless WithKey
// says otherwise). The gateway advertises whatever scheme and host a client
// used, so it needs to know neither.
//
// Go tests should not do this by hand: package emulator/cosmos/cosmostest
// starts a Server on an httptest server for one test, with an azcosmos
// client, FailNext and a request log.
//
// # What it implements
//
//   - Account read (GET /) advertising the scheme and host:port the client
//     used, because the SDKs send every later request there.
//   - Databases and containers: create (409 on duplicates), read, list,
//     query, replace, delete. Missing ones are created on first data use
//     (items, queries, the change feed) unless WithAutoCreate(false); a read
//     of a missing database or container answers 404, as the service does,
//     so SDKs' createIfNotExists creates it with the caller's settings. A
//     container gets WithPartitions ranges, or one per 10,000 RU/s of
//     requested throughput (x-ms-offer-throughput or the autoscale maximum).
//   - Partition key ranges as a change feed: 200 with an etag, then 304 for
//     the same etag; splits and merges list new ranges with "parents".
//   - Documents: create/upsert/replace/read/patch/delete with If-Match (412),
//     409 on duplicates, 404, partition key header checks, "Prefer:
//     return=minimal", system properties _rid/_self/_etag/_attachments/_ts.
//     Documents are placed on ranges by the service's V2 hash.
//   - Queries (x-ms-documentdb-query or x-ms-documentdb-isquery) in the SQL
//     subset described in query.go, with paging by x-ms-continuation, query
//     and index metrics when asked, the gateway's cross-partition rules
//     (crosspart.go), and the query-plan request other SDKs send first.
//   - Change feed (A-IM: Incremental Feed) per partition key range: from
//     the beginning, from If-None-Match "<lsn>" or "*" (now), or from
//     If-Modified-Since (GMT or UTC); 304 with the current LSN as etag when
//     nothing is new; latest-version semantics (an update moves a document
//     to the tail with a new _lsn, deletes are not shown); x-ms-session-token
//     "<range>:-1#<lsn>"; x-ms-start-epk/x-ms-end-epk filters; 410 with
//     substatus 1002 for a range that was split or merged away.
//   - Throughput offers (offers.go) and transactional batch (batch.go).
//   - Master-key signature checks on every request (401 otherwise), with a
//     15-minute x-ms-date window. Entra ID tokens only with WithAllowAAD.
//
// Not implemented: stored procedures/triggers/UDFs, TTL expiry, "all
// versions and deletes" change feed, resource tokens, multiple regions,
// full-text and vector search. The V1 hash is not implemented: containers
// always use the V2 hash, and a create without partitionKey.version is
// stored as version 2 (azcosmos ReadManyItems would otherwise route with
// V1).
//
// # In-process controls
//
//   - Split(db, coll, rangeID) and Merge(db, coll, a, b) change the
//     topology; the SDK sees 410/1002 on its next read of a gone range.
//   - Inject(Fault{...}) scripts 429 (with x-ms-retry-after-ms), 503, 410 or
//     delays for chosen request Kinds; KindOf tells a request's Kind.
//   - Upsert/Delete write documents without HTTP; CreateContainer creates a
//     container with a chosen partition key and range count;
//     PartitionKeyRanges lists a container's current ranges.
//   - Counts reports how many requests of each Kind arrived.
//   - WithAdminRoutes exposes the same controls over HTTP under /_admin/
//     (see AdminHandler); they are unauthenticated, so keep such a server on
//     loopback.
//
// # Concurrency
//
// All methods are safe for concurrent use; one mutex guards the state, so
// requests are served one at a time once authenticated. Injected delays
// run outside the lock.
package cosmos
