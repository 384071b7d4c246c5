package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/changecast/changecast/admin"
)

const leasesUsage = `Usage:
  changecast leases list -c FILE [--no-lag]
      PostgreSQL: the slot (active, confirmed_flush_lsn, lag) and its lease owner
      Cosmos DB: one line per lease: token, owner, range, continuation, lag, age
  changecast checkpoint reset -c FILE --to beginning|now|<RFC 3339 time>|<LSN>
      move every stream; running workers restart from there
      (a PostgreSQL slot moves only forward: now or an LSN past the slot's)
  changecast checkpoint reset -c FILE --resnapshot
      PostgreSQL: republish every row of the mapped tables as whole documents,
      beside the stream (clients and a persistent shadow store get them all)

Cosmos DB leases need a shared lease store (lease.store: cosmos or
postgres); a memory store lives inside the running worker.
`

// cmdLeases is `changecast leases list`.
func cmdLeases(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "list" {
		fmt.Fprint(stderr, leasesUsage)
		return 2
	}
	fs := flag.NewFlagSet("leases list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "changecast.yaml", "config file")
	noLag := fs.Bool("no-lag", false, "skip the lag (Cosmos DB: one change feed read per lease; PostgreSQL: the WAL distance)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	cfg, err := loadConfig(*path, stderr)
	if err != nil {
		return 2
	}
	rep, err := admin.Leases(ctx, cfg, admin.LeasesOptions{NoLag: *noLag})
	if err != nil {
		return adminFailed(stderr, "leases list", err)
	}
	rep.WriteText(stdout)
	return 0
}

// cmdCheckpoint is `changecast checkpoint reset`.
func cmdCheckpoint(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "reset" {
		fmt.Fprint(stderr, leasesUsage)
		return 2
	}
	fs := flag.NewFlagSet("checkpoint reset", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "changecast.yaml", "config file")
	to := fs.String("to", "", "beginning, now, an RFC 3339 time, or a PostgreSQL LSN")
	resnapshot := fs.Bool("resnapshot", false, "republish every row of the mapped tables while streaming goes on (PostgreSQL)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	cfg, err := loadConfig(*path, stderr)
	if err != nil {
		return 2
	}
	res, err := admin.ResetCheckpoint(ctx, cfg, admin.ResetOptions{To: *to, Resnapshot: *resnapshot})
	if err != nil {
		return adminFailed(stderr, "checkpoint reset", err)
	}
	fmt.Fprintln(stdout, res)
	return 0
}

// adminFailed prints err and returns its exit code: 2 for a request
// refused as asked, 1 for a failure.
func adminFailed(stderr io.Writer, name string, err error) int {
	fmt.Fprintf(stderr, "changecast %s: %v\n", name, err)
	if admin.IsArgError(err) {
		return 2
	}
	return 1
}
