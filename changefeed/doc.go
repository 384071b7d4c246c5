// Package changefeed holds the contracts between change sources and the
// pipeline: a Source emits Events (a Change, a resumable Position, or both)
// in source order and is told through Checkpoint how far everything has
// been published.
//
// # Which type to use
//
//   - Implement Source for a new database. Emit a Position only where the
//     source can resume (a PostgreSQL commit, a Cosmos page); events between
//     positions carry none.
//   - Tracker turns acknowledgements that arrive in any order into an
//     in-order watermark; the processor (package changefeed/processor) owns
//     one per stream. A position is checkpointed only once every event
//     before it was published: at-least-once delivery, never an ack on
//     receipt.
//   - Sources live in subpackages: postgres (logical replication) and
//     cosmos (the change feed; its tests run against the Cosmos DB
//     emulator in emulator/cosmos).
package changefeed
