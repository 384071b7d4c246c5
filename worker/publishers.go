package worker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/hub"
	"github.com/changecast/changecast/publish/signalr"
	"github.com/changecast/changecast/schema/config"
)

// publisher is what newPublisher built.
type publisher struct {
	publish.Publisher
	// run, when not nil, is a long-lived part the worker must run: the
	// built-in hub's server, or, for Azure SignalR, the app negotiate
	// endpoint on hub.listen.
	run func(context.Context) error
	// neg is the app negotiate endpoint, when there is one: the snapshot
	// and changes endpoints are mounted next to it.
	neg *hub.Negotiator
	// stats, for the built-in hub, reports its hubs' connections and
	// groups (the console).
	stats func() any
}

// newPublisher builds the hub or signalr publisher.
func newPublisher(cfg *config.Config, log *slog.Logger, stdout, stderr io.Writer) (publisher, error) {
	switch cfg.Publish.Target {
	case "hub":
		h, err := hub.New(HubConfig(cfg.Hub), hub.WithLogger(log.With("part", "hub")))
		if err != nil {
			return publisher{}, fatal(fmt.Errorf("hub: %w", err))
		}
		// Listen now so a taken port fails the start, not a later goroutine.
		ln, err := net.Listen("tcp", cfg.Hub.Listen)
		if err != nil {
			return publisher{}, fatal(fmt.Errorf("hub.listen: %w", err))
		}
		run := func(ctx context.Context) error { return h.Serve(ctx, ln) }
		if cfg.Hub.AccessKey == "" {
			// Development: the key was generated, so tell the user how to
			// reach the hub's REST API (it is logged nowhere else).
			fmt.Fprintf(stderr, "changecast: hub access key generated for this run; connection string:\n  Endpoint=http://%s;AccessKey=%s;Version=1.0;\n", ln.Addr(), h.AccessKey())
		}
		log.Info("built-in hub", "endpoint", "http://"+ln.Addr().String(), "negotiate", "http://"+ln.Addr().String()+cfg.Hub.Negotiate.Path+"/negotiate")
		return publisher{Publisher: h.Publisher(), run: run, neg: h.Negotiator(), stats: func() any { return h.Stats() }}, nil
	case "signalr":
		p, err := signalr.New(cfg.Publish.SignalR.ConnectionString, signalr.WithLogger(log.With("part", "signalr")))
		if err != nil {
			return publisher{}, fatal(fmt.Errorf("publish.signalr.connectionString: %w", err))
		}
		if !cfg.Hub.Negotiate.Auth.Any() {
			return publisher{Publisher: p}, nil
		}
		neg, err := hub.NewNegotiator(HubConfig(cfg.Hub), p.Client(), hub.WithLogger(log.With("part", "negotiate")))
		if err != nil {
			return publisher{}, fatal(fmt.Errorf("hub.negotiate: %w", err))
		}
		ln, err := net.Listen("tcp", cfg.Hub.Listen)
		if err != nil {
			return publisher{}, fatal(fmt.Errorf("hub.listen: %w", err))
		}
		log.Info("app negotiate for Azure SignalR", "url", "http://"+ln.Addr().String()+cfg.Hub.Negotiate.Path+"/negotiate")
		return publisher{Publisher: p, run: func(ctx context.Context) error { return serve(ctx, ln, neg.Handler()) }, neg: neg}, nil
	case "stdout":
		return publisher{Publisher: publish.NewWriter(stdout)}, nil
	}
	return publisher{}, fatal(fmt.Errorf("publish.target: %q is not stdout, hub or signalr", cfg.Publish.Target))
}
