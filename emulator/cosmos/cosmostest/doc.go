// Package cosmostest runs changecast's Cosmos DB emulator (package
// emulator/cosmos) in Go tests.
//
// # Which type to start from
//
// Start from Start, which returns a Server serving a fresh emulator on a
// loopback httptest server that is closed when the test ends:
//
//	srv := cosmostest.Start(t, cosmos.WithPartitions(4))
//	client := srv.Client(t) // azcosmos with the master key, closed at cleanup
//	srv.Upsert("app", "orders", map[string]any{"id": "o1"})
//	srv.Split("app", "orders", "0")
//	srv.FailNext(2, http.StatusTooManyRequests, cosmos.KindChangeFeed)
//
// Server embeds the emulator's *cosmos.Server, so its in-process controls
// (Split, Merge, Upsert, Delete, Inject, CreateContainer,
// PartitionKeyRanges) are at hand; options, Fault and the Kind constants
// come from package emulator/cosmos. Server adds the endpoint (URL,
// ConnectionString), clients, FailNext, and a log of the requests the
// SDK sent (Count, Requests, ResetCounts).
//
// Give each test its own Server: azcosmos keeps routing caches per
// endpoint for the life of the process, so a fresh port keeps tests
// independent.
package cosmostest
