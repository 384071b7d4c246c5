// Package cosmostest is an in-memory Azure Cosmos DB gateway that speaks
// the REST wire protocol the official SDKs use, so the real
// github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos client (and the
// other SDKs, for the calls it supports) can run against it in tests and
// in `changecast emulate cosmos`. No Cosmos DB emulator supports the change
// feed without Docker; this one exists for that.
//
// # Which type to use
//
// Use Server. In a test:
//
//	srv := cosmostest.New(cosmostest.WithPartitions(4))
//	defer srv.Close()
//	client, _ := srv.NewClient() // azcosmos client with the master key
//	defer client.Close()
//
// URL, Key and ConnectionString give the account endpoint and key for any
// client. To serve on a listener of your own, build it with NewUnstarted
// and serve Handler(). Each test should use its own Server: azcosmos keeps
// routing caches per endpoint for the life of the process.
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
//     x-ms-offer-throughput.
//   - Partition key ranges as a change feed: 200 with an etag, then 304 for
//     the same etag; splits and merges list new ranges with "parents".
//   - Documents: create/upsert/replace/read/patch/delete with If-Match (412),
//     409 on duplicates, 404, partition key header checks, "Prefer:
//     return=minimal", system properties _rid/_self/_etag/_attachments/_ts.
//     Documents are placed on ranges by the service's V2 hash.
//   - Queries (x-ms-documentdb-query or x-ms-documentdb-isquery) in the SQL
//     subset described in query.go, with paging by x-ms-continuation, and
//     the query-plan request other SDKs send first.
//   - Change feed (A-IM: Incremental Feed) per partition key range: from
//     the beginning, from If-None-Match "<lsn>" or "*" (now), or from
//     If-Modified-Since; 304 with the current LSN as etag when nothing is
//     new; latest-version semantics (an update moves a document to the tail
//     with a new _lsn, deletes are not shown); x-ms-session-token
//     "<range>:-1#<lsn>"; x-ms-start-epk/x-ms-end-epk filters; 410 with
//     substatus 1002 for a range that was split or merged away.
//   - Master-key signature checks on every request (401 otherwise), with a
//     15-minute x-ms-date window. Entra ID tokens only with WithAllowAAD.
//
// Not implemented: transactional batch, stored procedures/triggers/UDFs,
// TTL expiry, "all versions and deletes" change feed, resource tokens,
// multiple regions. The V1 hash is not implemented: containers always use
// the V2 hash, and a create without partitionKey.version is stored as
// version 2 (azcosmos ReadManyItems would otherwise route with V1).
//
// # Scripting
//
//   - Split(db, coll, rangeID) and Merge(db, coll, a, b) change the
//     topology; the SDK sees 410/1002 on its next read of a gone range.
//   - FailNext(n, status, kinds...) and Inject(Fault{...}) script 429 (with
//     x-ms-retry-after-ms), 503, 410 or delays for chosen request kinds.
//   - Upsert/Delete write documents without HTTP; CreateContainer creates a
//     container with a chosen partition key and range count.
//   - Count, Counts and Requests report what the SDK sent, by Kind.
//   - WithAdminRoutes exposes the same controls over HTTP under /_admin/.
//
// # Concurrency
//
// All methods are safe for concurrent use; one mutex guards the state, so
// requests are served one at a time once authenticated. Injected delays
// run outside the lock.
package cosmostest
