package admin

import (
	"context"
	"fmt"

	"github.com/changecast/changecast/changefeed/cosmos"
	"github.com/changecast/changecast/internal/connect"
	"github.com/changecast/changecast/lease"
	"github.com/changecast/changecast/schema/config"
)

// cosmosFeed is what the lease operations work on.
type cosmosFeed struct {
	feed   *cosmos.Feed
	store  lease.Store
	prefix string
	close  func()
}

// openCosmos opens the container and the lease store of cfg.
func openCosmos(ctx context.Context, cfg *config.Config, store lease.Store) (*cosmosFeed, error) {
	cs := cfg.Source.Cosmos
	if cs == nil {
		return nil, argErrorf("only a cosmos or postgres source has leases (source.cosmos is not set)")
	}
	if cfg.Lease.Store == "memory" && store == nil {
		return nil, argErrorf("lease.store is memory: the leases live inside the running worker; use a shared store (cosmos or postgres)")
	}
	client, err := connect.Cosmos(cs)
	if err != nil {
		return nil, err
	}
	a := &cosmosFeed{close: client.Close}
	fail := func(err error) (*cosmosFeed, error) {
		a.close()
		return nil, err
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
	if store != nil {
		a.store = store
		return a, nil
	}
	store, closeStore, err := connect.LeaseStore(ctx, cfg, client)
	if err != nil {
		return fail(err)
	}
	a.store = store
	a.close = func() { closeStore(); client.Close() }
	return a, nil
}

func cosmosLeases(ctx context.Context, cfg *config.Config, o LeasesOptions) (*LeaseReport, error) {
	a, err := openCosmos(ctx, cfg, o.Store)
	if err != nil {
		return nil, err
	}
	defer a.close()
	ls, err := a.store.List(ctx, a.prefix+lease.Separator)
	if err != nil {
		return nil, err
	}
	rep := &LeaseReport{Processor: cfg.Lease.Processor, Prefix: a.prefix, Leases: []LeaseState{}}
	for _, l := range ls {
		st := LeaseState{Token: l.Token, Owner: l.Owner, Range: l.Range, Continuation: cosmos.Describe(l.Continuation), Age: Duration(l.Age())}
		if !o.NoLag {
			switch n, known, err := a.feed.Estimate(ctx, l.Continuation, l.Range); {
			case err != nil:
				st.LagError = err.Error()
			case known:
				st.Lag = &n
			}
		}
		rep.Leases = append(rep.Leases, st)
	}
	return rep, nil
}

func cosmosReset(ctx context.Context, cfg *config.Config, to string) (*Reset, error) {
	start, err := cosmos.ParseStart(to)
	if err != nil || to == "" {
		return nil, argErrorf("--to must be beginning, now or an RFC 3339 time")
	}
	a, err := openCosmos(ctx, cfg, nil)
	if err != nil {
		return nil, err
	}
	defer a.close()
	n, err := cosmos.ResetCheckpoints(ctx, a.store, a.prefix, a.feed, start)
	if err != nil {
		return nil, fmt.Errorf("%w (%d leases reset before the error)", err, n)
	}
	if n == 0 {
		return nil, fmt.Errorf("no leases yet; set source.cosmos.startFrom instead (it applies when the first worker creates them)")
	}
	return &Reset{Processor: cfg.Lease.Processor, Leases: n, To: start.String()}, nil
}
