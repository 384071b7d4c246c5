// Package processor runs one change stream end to end: it reads Events from
// a changefeed.Source, turns each change into wire changes with a
// publish.Mapper, groups them per target with a publish.Batcher, publishes
// batches through a publish.Publisher (one in flight per target, so each
// group keeps its order; several targets in parallel), and checkpoints the
// source with the changefeed.Tracker's watermark once batches are accepted.
//
// Use New(cfg, source, mapper, publisher).Run(ctx). Run's loop is the only
// goroutine that touches the mapper, batcher and tracker; publishing runs in
// short-lived goroutines that report back on a channel.
//
// Failure rules, so one bad document never stalls a stream: retryable
// errors are retried with backoff (honouring the target's Retry-After); a
// batch over the size limit is split; a batch refused for good is sent
// again as refetch markers. Reading pauses while MaxPending events wait
// (backpressure). Cancelling ctx is a soft stop (publish what was read,
// checkpoint, return); a ctx cancelled because the stream's lease was lost
// drops in-flight work without checkpointing.
package processor
