// Package changefeed runs change streams: a Source emits Events (a Change,
// a resumable Position, or both) in source order; a Processor hands the
// changes to a Consumer and checkpoints the source as the consumer
// acknowledges them; a Runner runs one Processor per lease of a feed's
// Partitions, balanced across the instances sharing a lease store.
//
// # Which type to use
//
//   - Runner is what a worker runs: NewRunner(RunnerConfig{Partitions,
//     Store, NewConsumer, …}) then Run(ctx). Partitions come from the
//     sources: postgres.Slot (one lease: a leader election) and
//     cosmos.Container (one lease per feed range, split with the
//     partitions).
//   - Processor runs one stream without leases: NewProcessor(cfg, source,
//     consumer).Run(ctx).
//   - Consumer is the contract the publish pipeline implements
//     (publish.Pipeline): it receives Deliveries and acknowledges them by
//     sequence number once published, in any order. A Consumer that keeps
//     per-change state which must be durable before the checkpoint passes
//     the change (a shadow store) also implements Committer.
//   - Tracker turns acknowledgements that arrive in any order into an
//     in-order watermark: a position is checkpointed only once every event
//     before it was acknowledged (at-least-once, never an ack on receipt).
//   - Implement Source (and Partitions) for a new database. Emit a Position
//     only where the source can resume (a PostgreSQL commit, a Cosmos
//     page); events between positions carry none. Return an error for
//     which IsFatal is true for what retrying cannot fix.
//
// Nothing here imports the publish side: the processor drives the Consumer
// interface it declares, and acknowledgements flow back through it.
package changefeed
