package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/changecast/changecast/changefeed/cosmos"
	"github.com/changecast/changecast/lease"
	"github.com/changecast/changecast/schema/config"
)

const leasesUsage = `Usage:
  changecast leases list -c FILE [--no-lag]
      one line per lease: token, owner, range, continuation, lag, age
  changecast checkpoint reset -c FILE --to beginning|now|<RFC 3339 time>
      rewrite every lease's continuation; running workers restart from it

Both need a shared lease store (lease.store: cosmos or postgres); a memory
store lives inside the running worker.
`

// cosmosAdmin is what the lease commands work on.
type cosmosAdmin struct {
	cfg    *config.Config
	client *azcosmos.Client
	feed   *cosmos.Feed
	store  lease.Store
	prefix string
	close  func()
}

// openCosmosAdmin loads the config and opens the container and the lease
// store. On failure it has printed why and returns the exit code.
func openCosmosAdmin(ctx context.Context, name string, path string, stderr io.Writer) (*cosmosAdmin, int) {
	cfg, err := loadConfig(path, stderr)
	if err != nil {
		return nil, 2
	}
	cs := cfg.Source.Cosmos
	if cs == nil {
		fmt.Fprintf(stderr, "changecast %s: only a cosmos source has leases to show (source.cosmos is not set)\n", name)
		return nil, 2
	}
	if cfg.Lease.Store == "memory" {
		fmt.Fprintf(stderr, "changecast %s: lease.store is memory: the leases live inside the running worker; use a shared store (cosmos or postgres)\n", name)
		return nil, 2
	}
	client, err := newCosmosClient(cs)
	if err != nil {
		fmt.Fprintf(stderr, "changecast %s: %v\n", name, err)
		return nil, 1
	}
	a := &cosmosAdmin{cfg: cfg, client: client, close: client.Close}
	fail := func(err error) (*cosmosAdmin, int) {
		fmt.Fprintf(stderr, "changecast %s: %v\n", name, err)
		a.close()
		return nil, 1
	}
	c, err := client.NewContainer(cs.Database, cs.Container)
	if err != nil {
		return fail(err)
	}
	start, _ := cosmos.ParseStart(cs.StartFrom)
	if a.feed, err = cosmos.NewFeed(ctx, c, cosmos.FeedConfig{Start: start}, nil); err != nil {
		return fail(err)
	}
	if a.prefix, err = cosmos.LeasePrefix(ctx, client, cs.Database, a.feed, cfg.Lease.Processor); err != nil {
		return fail(err)
	}
	store, closeStore, err := newLeaseStore(ctx, cfg, client)
	if err != nil {
		return fail(err)
	}
	a.store = store
	a.close = func() { closeStore(); client.Close() }
	return a, 0
}

// cmdLeases is `changecast leases list`.
func cmdLeases(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "list" {
		fmt.Fprint(stderr, leasesUsage)
		return 2
	}
	fs := flag.NewFlagSet("leases list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "changecast.yaml", "config file")
	noLag := fs.Bool("no-lag", false, "skip the lag estimate (one change feed read per lease)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if cfg, err := loadConfig(*path, stderr); err != nil {
		return 2
	} else if cfg.Source.Postgres != nil {
		return pgLeasesList(ctx, cfg, stdout, stderr)
	}
	a, code := openCosmosAdmin(ctx, "leases list", *path, stderr)
	if a == nil {
		return code
	}
	defer a.close()
	ls, err := a.store.List(ctx, a.prefix+lease.Separator)
	if err != nil {
		fmt.Fprintln(stderr, "changecast leases list:", err)
		return 1
	}
	fmt.Fprintf(stdout, "processor %s, leases %s%s*\n", a.cfg.Lease.Processor, a.prefix, lease.Separator)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LEASE\tOWNER\tRANGE\tCONTINUATION\tLAG\tAGE")
	for _, l := range ls {
		owner := l.Owner
		if owner == "" {
			owner = "-"
		}
		lag := "-"
		if !*noLag {
			switch n, known, err := a.feed.Estimate(ctx, l.Continuation, l.Range); {
			case err != nil:
				lag = "error: " + err.Error()
				if len(lag) > 60 {
					lag = lag[:60] + "…"
				}
			case known:
				lag = fmt.Sprint(n)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t[%s, %s)\t%s\t%s\t%s\n", l.Token, owner, l.Range.Min, l.Range.Max,
			cosmos.Describe(l.Continuation), lag, l.Age().Round(time.Second))
	}
	tw.Flush()
	if len(ls) == 0 {
		fmt.Fprintln(stdout, "no leases yet: the first worker creates them (source.cosmos.startFrom applies then)")
	}
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
	to := fs.String("to", "", "beginning, now, or an RFC 3339 time")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if cfg, err := loadConfig(*path, stderr); err != nil {
		return 2
	} else if cfg.Source.Postgres != nil {
		return pgCheckpointReset(ctx, cfg, *to, stdout, stderr)
	}
	start, err := cosmos.ParseStart(*to)
	if err != nil || *to == "" {
		fmt.Fprintln(stderr, "changecast checkpoint reset: --to must be beginning, now or an RFC 3339 time")
		return 2
	}
	a, code := openCosmosAdmin(ctx, "checkpoint reset", *path, stderr)
	if a == nil {
		return code
	}
	defer a.close()
	n, err := cosmos.ResetCheckpoints(ctx, a.store, a.prefix, a.feed, start)
	if err != nil {
		fmt.Fprintf(stderr, "changecast checkpoint reset: %v (%d leases reset before the error)\n", err, n)
		return 1
	}
	if n == 0 {
		fmt.Fprintln(stderr, "changecast checkpoint reset: no leases yet; set source.cosmos.startFrom instead (it applies when the first worker creates them)")
		return 1
	}
	fmt.Fprintf(stdout, "reset %d leases of processor %s to %s; running workers restart from there within a renew interval\n",
		n, a.cfg.Lease.Processor, start)
	return 0
}
