// Package publish turns source changes into what clients receive and sends
// it.
//
// # Which type to use
//
//   - Pipeline: one stream's consumer (changefeed.Consumer): map, batch,
//     publish, acknowledge. NewPipeline(cfg, mapper, publisher), then run
//     it under changefeed.NewProcessor or a changefeed.Runner.
//   - Mapper: routes a changefeed.Change through the mappings of its
//     collection (hub, group or user templates, include/exclude
//     projection) and diffs it against the last version sent (RFC 6902 via
//     wI2L/jsondiff, a bounded shadow cache), producing Outputs: patch,
//     upsert, delete, refetch or truncate wire changes. Pure and
//     single-goroutine.
//   - Batcher: adaptive batching as a passive policy, per Audience (a hub,
//     or one group or user of it): an idle audience sends at once (or after
//     an optional linger), changes that arrive while its batch is in flight
//     go out together when it completes, cut by count and bytes; BuildBatch
//     encodes a batch's envelope once.
//   - Publisher: the contract every target implements. Errors say how to
//     react: Retryable (with a wait), TooLarge (split), Permanent.
//   - Writer: the stdout publisher (one envelope per line). The built-in
//     hub (publish/hub) and Azure SignalR (publish/signalr) implement the
//     same contract.
package publish
