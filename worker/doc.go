// Package worker turns a config file into a running changecast worker:
// Run(ctx, cfg, Options) assembles the source under its leases
// (changefeed.Runner over a postgres.Slot or a cosmos.Container, with the
// lease store the file names), one publish.Pipeline per lease, the
// publisher (stdout, the built-in hub, or Azure SignalR with the app
// negotiate), and the operations endpoint (/healthz, /readyz, /metrics and
// the admin API), and owns them until ctx ends.
//
// It is the one place where the config file (schema/config) is translated
// into the option structs of the library packages (translate.go); the CLI
// in cmd/changecast only parses flags, prints, and maps errors to exit
// codes (a changefeed.IsFatal error is a configuration problem: exit 2).
package worker
