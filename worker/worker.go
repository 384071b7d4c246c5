package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/changecast/changecast/admin"
	"github.com/changecast/changecast/admin/console"
	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/history"
	"github.com/changecast/changecast/schema/config"
)

// Options are what a worker needs beyond its config file.
type Options struct {
	// Stdout receives the envelopes of publish.target stdout.
	Stdout io.Writer
	// Stderr receives what is printed for a person, not logged: the
	// generated access key of the built-in hub.
	Stderr io.Writer
	Logger *slog.Logger
	// Registry receives the metrics served at /metrics; nil makes one
	// with the Go and process collectors.
	Registry *prometheus.Registry
}

// Run assembles the worker of cfg (defaults applied and validated, as
// config.Load returns it) and runs it until ctx ends or its source fails
// for good: the source under leases, the publish pipeline, the publisher
// (stdout, the built-in hub, or Azure SignalR with the app negotiate), and
// the operations endpoint. It owns every part and returns only after all
// of them stopped. A configuration problem found at start or by the source
// satisfies changefeed.IsFatal.
func Run(ctx context.Context, cfg *config.Config, o Options) error {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	log := o.Logger
	// The console's monitor keeps the last changes, warnings and errors
	// and 15 minutes of metrics; only the admin API serves it.
	var mon *admin.Monitor
	if cfg.Server.Listen != "" && cfg.Server.AdminToken != "" {
		mon = admin.NewMonitor(reg)
		log = slog.New(mon.LogHandler(log.Handler()))
	}
	// Mappings compile once, here, so a bad one fails before any
	// connection.
	mappings := Mappings(cfg)
	if _, err := publish.NewMapper(mappings, publish.MapperOptions{}); err != nil {
		return fatal(err)
	}

	var parts []func(context.Context) error // long-lived parts beside the source
	pub, err := newPublisher(cfg, log, o.Stdout, o.Stderr)
	if err != nil {
		return err
	}
	if pub.run != nil {
		parts = append(parts, pub.run)
	}
	if mon != nil {
		// Inside the history publisher, which the pipeline asks to renew
		// streams: what the target accepted is recorded.
		pub.Publisher = mon.Publisher(pub.Publisher)
		mon.Hubs = pub.stats
		parts = append(parts, mon.Run)
	}

	// The history serves the changes endpoint next to negotiate, so it is
	// kept only when there is one.
	var hist history.Store
	if pub.neg != nil {
		h, closeHist, err := openHistory(cfg, log)
		if err != nil {
			return err
		}
		defer closeHist()
		if h != nil {
			hist = h
			pub.Publisher = history.NewPublisher(h, pub.Publisher)
		}
	}

	src, err := newSource(ctx, cfg, mappings, pub.Publisher, reg, log)
	if err != nil {
		return err
	}
	defer src.close()
	runner := src.runner
	if mon != nil {
		mon.Leases = src.store
	}
	if pub.neg != nil {
		closeEndpoints, err := mountEndpoints(cfg, mappings, pub.neg, src.snap, hist, reg, log)
		if err != nil {
			return err
		}
		defer closeEndpoints()
	}

	if cfg.Server.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Server.Listen)
		if err != nil {
			return fatal(fmt.Errorf("server.listen: %w", err))
		}
		var adm http.Handler
		if cfg.Server.AdminToken != "" {
			adm = admin.Handler(cfg.Server.AdminToken, cfg, mon)
		}
		log.Info("operations endpoint", "url", "http://"+ln.Addr().String(), "paths", "/healthz /readyz /metrics", "admin", adm != nil)
		if adm != nil {
			log.Info("web console", "url", "http://"+ln.Addr().String()+"/console/")
		}
		parts = append(parts, func(ctx context.Context) error { return serve(ctx, ln, opsHandler(reg, runner, adm)) })
	}

	// The source side decides when the process ends; the other parts run
	// until it has drained and checkpointed.
	partsCtx, stopParts := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	errs := make(chan error, len(parts))
	for _, run := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(partsCtx); err != nil {
				errs <- err
			}
		}()
	}
	log.Info("changecast running", "source", src.label, "publish", cfg.Publish.Target)
	err = runner.Run(ctx)
	stopParts()
	wg.Wait()
	close(errs)
	for e := range errs {
		err = errors.Join(err, e)
	}
	if err == nil {
		log.Info("changecast stopped cleanly")
	}
	return err
}

// configError is a problem of the config file found at start: like a
// source's fatal error, retrying cannot fix it.
type configError struct{ error }

func (e configError) Unwrap() error { return e.error }
func (configError) Fatal() bool     { return true }

func fatal(err error) error { return configError{err} }

var _ changefeed.Fatal = configError{}

func opsHandler(reg *prometheus.Registry, ready interface{ Ready() bool }, adm http.Handler) http.Handler {
	mux := http.NewServeMux()
	if adm != nil {
		// The page holds no secret: it asks for the token the admin API
		// wants. Without a token there is no admin API, and no page.
		mux.Handle("/admin/", adm)
		mux.Handle("GET /console/", console.Handler())
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !ready.Ready() {
			http.Error(w, "not ready: source not streaming", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// serve serves h on ln until ctx ends, then shuts down gracefully.
func serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	// Bounded reads and idle keep-alives: open endpoints (negotiate) must
	// not let idle or trickling connections pile up.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
