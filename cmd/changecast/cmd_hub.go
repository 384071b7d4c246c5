package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/changecast/changecast/publish/hub"
	"github.com/changecast/changecast/publish/snapshot"
	"github.com/changecast/changecast/schema/config"
	"github.com/changecast/changecast/worker"
)

// envHubKey holds the hub's access key: a flag would show it in ps.
const envHubKey = "CHANGECAST_HUB_ACCESS_KEY"

// cmdHub runs the built-in hub alone: a local Azure SignalR Service
// emulator. It prints where REST callers and clients go (the connection
// string only when it generated the key: a key of yours is never
// printed), and serves until ctx ends (SIGINT/SIGTERM).
func cmdHub(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hub", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "", "address to serve on (default 127.0.0.1:8080, or the hub config's listen)")
	var hubs stringList
	fs.Var(&hubs, "hub", "a hub to serve (repeat for more); added to the hub config's hubs")
	cfgPath := fs.String("hub-config", "", "YAML file holding a hub section (the keys under hub: in the config); default: anonymous negotiate, loopback CORS origins")
	verbose := fs.Bool("v", false, "log connections and refused requests")
	check := fs.Bool("check", false, "check the hub config (with the flags and $"+envHubKey+") and exit: 0 when valid, 2 naming each problem")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: changecast hub -hub NAME [-hub NAME...] [flags]\n\nThe access key comes from the hub config's accessKey, else from $%s (at least %d bytes), else it is generated and printed.\n\n", envHubKey, config.MinAccessKeyBytes)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg := config.Hub{Negotiate: config.HubNegotiate{Auth: config.NegotiateAuth{Anonymous: true}}}
	if *cfgPath != "" {
		raw, err := os.ReadFile(*cfgPath)
		if err != nil {
			fmt.Fprintln(stderr, "changecast hub:", err)
			return 2
		}
		h, err := config.DecodeHub(raw, os.LookupEnv)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", *cfgPath, err)
			return 2
		}
		cfg = *h
	}
	cfg.Hubs = append(cfg.Hubs, hubs...)
	if *listen != "" {
		cfg.Listen = *listen
	}
	if cfg.AccessKey == "" {
		cfg.AccessKey = os.Getenv(envHubKey)
	}
	generated := cfg.AccessKey == ""
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		where := "changecast hub"
		if *cfgPath != "" {
			where = *cfgPath
		}
		var joined interface{ Unwrap() []error }
		if errors.As(err, &joined) {
			for _, e := range joined.Unwrap() {
				fmt.Fprintf(stderr, "%s: %v\n", where, e)
			}
		} else {
			fmt.Fprintf(stderr, "%s: %v\n", where, err)
		}
		if len(cfg.Hubs) == 0 {
			fmt.Fprintln(stderr, "changecast hub: name the hubs to serve with -hub NAME")
		}
		return 2
	}
	if *check {
		fmt.Fprintf(stdout, "hub config valid: hubs %s\n", strings.Join(cfg.Hubs, ", "))
		return 0
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
	if len(cfg.Peers) > 0 {
		// A hub node has no source and no history: it answers its clients'
		// snapshots and catch-ups by the workers (docs/scale-out.md).
		fwd := &snapshot.Forwarder{Auth: srv.Negotiator(), Peers: &snapshot.Peers{URLs: cfg.Peers, Timeout: cfg.PeerTimeout.D()},
			Logger: log.With("part", "forward")}
		srv.Negotiator().Handle("GET /snapshot", fwd)
		srv.Negotiator().Handle("GET /changes", fwd)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	select {
	case <-srv.Listening():
		if srv.Addr() != nil {
			if generated {
				fmt.Fprintf(stdout, "AZURE_SIGNALR_CONNECTION_STRING=%s\n", srv.ConnectionString())
			} else {
				fmt.Fprintf(stdout, "endpoint: %s (AccessKey: the configured one)\n", srv.Endpoint())
			}
			fmt.Fprintf(stdout, "hubs: %s\n", strings.Join(cfg.Hubs, ", "))
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

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(s string) error {
	*l = append(*l, s)
	return nil
}
