// Package admin holds the operations an admin runs on a processor's
// streams, as functions returning typed results: Leases (where each stream
// is and who reads it: a PostgreSQL slot, or Cosmos DB leases) and
// ResetCheckpoint (move every stream to a new start). The CLI
// (`changecast leases list`, `changecast checkpoint reset`) prints them
// with WriteText and String; Handler serves them as JSON over HTTP behind a
// bearer token, on the running worker's config. An *ArgError is a refusal
// of the request as asked (exit 2, HTTP 400); other errors are failures.
//
// Monitor is what the running worker keeps for the web console (package
// admin/console): the last changes its publisher accepted, the last
// warnings and errors it logged, 15 minutes of throughput and lag sampled
// from its metrics. Handler serves it with the streams as GET
// /admin/status (CurrentStatus).
package admin
