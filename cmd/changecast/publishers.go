package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/hub"
	"github.com/changecast/changecast/publish/signalr"
	"github.com/changecast/changecast/schema/config"
)

// newPublisher builds the hub or signalr publisher; run, when not nil, is a
// long-lived part the worker must run: the built-in hub's server, or, for
// Azure SignalR, the app negotiate endpoint on hub.listen.
func newPublisher(ctx context.Context, cfg *config.Config, log *slog.Logger, stderr io.Writer) (publish.Publisher, func(context.Context) error, error) {
	switch cfg.Publish.Target {
	case "hub":
		h, err := hub.New(hubConfig(cfg.Hub), hub.WithLogger(log.With("part", "hub")))
		if err != nil {
			return nil, nil, fmt.Errorf("hub: %w", err)
		}
		// Listen now so a taken port fails the start, not a later goroutine.
		ln, err := net.Listen("tcp", cfg.Hub.Listen)
		if err != nil {
			return nil, nil, fmt.Errorf("hub.listen: %w", err)
		}
		run := func(ctx context.Context) error { return h.Serve(ctx, ln) }
		if cfg.Hub.AccessKey == "" {
			// Development: the key was generated, so tell the user how to
			// reach the hub's REST API (it is logged nowhere else).
			fmt.Fprintf(stderr, "changecast: hub access key generated for this run; connection string:\n  Endpoint=http://%s;AccessKey=%s;Version=1.0;\n", ln.Addr(), h.AccessKey())
		}
		log.Info("built-in hub", "endpoint", "http://"+ln.Addr().String(), "negotiate", "http://"+ln.Addr().String()+cfg.Hub.Negotiate.Path+"/negotiate")
		return h.Publisher(), run, nil
	case "signalr":
		p, err := signalr.New(cfg.Publish.SignalR.ConnectionString, signalr.WithLogger(log.With("part", "signalr")))
		if err != nil {
			return nil, nil, fmt.Errorf("publish.signalr.connectionString: %w", err)
		}
		a := cfg.Hub.Negotiate.Auth
		if !a.Anonymous && a.JWT == nil {
			return p, nil, nil
		}
		neg, err := hub.NewNegotiator(hubConfig(cfg.Hub), p.Client(), hub.WithLogger(log.With("part", "negotiate")))
		if err != nil {
			return nil, nil, fmt.Errorf("hub.negotiate: %w", err)
		}
		ln, err := net.Listen("tcp", cfg.Hub.Listen)
		if err != nil {
			return nil, nil, fmt.Errorf("hub.listen: %w", err)
		}
		log.Info("app negotiate for Azure SignalR", "url", "http://"+ln.Addr().String()+cfg.Hub.Negotiate.Path+"/negotiate")
		return p, func(ctx context.Context) error { return serveHandler(ctx, ln, neg.Handler()) }, nil
	}
	return nil, nil, fmt.Errorf("publish.target: %q is not stdout, hub or signalr", cfg.Publish.Target)
}

func serveHandler(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}
