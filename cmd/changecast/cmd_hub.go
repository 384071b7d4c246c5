package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/changecast/changecast/publish/hub"
	"github.com/changecast/changecast/schema/config"
	"github.com/changecast/changecast/worker"
)

// cmdHub runs the built-in hub alone: a local Azure SignalR Service
// emulator. It prints the connection string for REST callers and the
// negotiate URL for clients, and serves until ctx ends (SIGINT/SIGTERM).
func cmdHub(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hub", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "", "address to serve on (default 127.0.0.1:8080, or the hub config's listen)")
	key := fs.String("key", os.Getenv("CHANGECAST_HUB_KEY"), "access key (default $CHANGECAST_HUB_KEY; generated when empty)")
	cfgPath := fs.String("hub-config", "", "YAML file holding a hub section (the keys under hub: in the config); default: anonymous negotiate, any CORS origin")
	verbose := fs.Bool("v", false, "log connections and refused requests")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg := config.Hub{
		Negotiate: config.HubNegotiate{Auth: config.NegotiateAuth{Anonymous: true}},
		// An emulator is called from dev servers on other ports.
		CORS: config.HubCORS{Origins: []string{"*"}},
	}
	if *cfgPath != "" {
		raw, err := os.ReadFile(*cfgPath)
		if err != nil {
			fmt.Fprintln(stderr, "changecast hub:", err)
			return 2
		}
		h, err := config.ParseHub(raw, os.LookupEnv)
		if err != nil {
			var joined interface{ Unwrap() []error }
			if errors.As(err, &joined) {
				for _, e := range joined.Unwrap() {
					fmt.Fprintf(stderr, "%s: %v\n", *cfgPath, e)
				}
			} else {
				fmt.Fprintf(stderr, "%s: %v\n", *cfgPath, err)
			}
			return 2
		}
		cfg = *h
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *key != "" {
		cfg.AccessKey = *key
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	srv, err := hub.New(worker.HubConfig(cfg), hub.WithLogger(log))
	if err != nil {
		fmt.Fprintln(stderr, "changecast hub:", err)
		return 2
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	select {
	case <-srv.Listening():
		if srv.Addr() != nil {
			fmt.Fprintf(stdout, "AZURE_SIGNALR_CONNECTION_STRING=%s\n", srv.ConnectionString())
			fmt.Fprintf(stdout, "negotiate: POST %s?hub=HUB\n", srv.NegotiateURL())
		}
	case <-ctx.Done():
	}
	if err := <-errc; err != nil {
		fmt.Fprintln(stderr, "changecast hub:", err)
		return 1
	}
	return 0
}
