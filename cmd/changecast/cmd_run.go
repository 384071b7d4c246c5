package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/changecast/changecast/changefeed/cosmos"
	"github.com/changecast/changecast/changefeed/postgres"
	"github.com/changecast/changecast/changefeed/processor"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/schema/config"
)

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "changecast.yaml", "config file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadConfig(*path, stderr)
	if err != nil {
		return 2
	}
	log := newLogger(stderr)
	if err := runWorker(ctx, cfg, *path, stdout, stderr, log); err != nil {
		log.Error("changecast stopped", "err", err)
		var fe *postgres.FatalError
		if errors.As(err, &fe) {
			return 2
		}
		return 1
	}
	return 0
}

// newLogger logs text to a terminal and JSON otherwise (CHANGECAST_LOG=
// text|json overrides); CHANGECAST_LOG_LEVEL=debug|info|warn|error.
func newLogger(w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(os.Getenv("CHANGECAST_LOG_LEVEL")))
	opts := &slog.HandlerOptions{Level: lvl}
	format := os.Getenv("CHANGECAST_LOG")
	if format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// readiness is what /readyz asks.
type readiness interface{ Ready() bool }

// runWorker owns every long-lived part of `changecast run` and waits for
// all of them before it returns.
// cfgPath is the file cfg came from (the admin API runs the admin commands
// on it).
func runWorker(ctx context.Context, cfg *config.Config, cfgPath string, stdout, stderr io.Writer, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Mappings compile once here so a bad one fails before any connection.
	if _, err := publish.NewMapper(cfg.Mappings, publish.MapperOptions{}); err != nil {
		return err
	}
	var (
		ready readiness
		label string
		parts []func(context.Context) error // other long-lived parts (hub, ops server)
		pub   publish.Publisher
		main  func(context.Context) error // the source side; its end ends the process
	)

	switch cfg.Publish.Target {
	case "stdout":
		pub = publish.NewWriter(stdout)
	default:
		p, run, err := newPublisher(ctx, cfg, log, stderr)
		if err != nil {
			return err
		}
		pub = p
		if run != nil {
			parts = append(parts, run)
		}
	}

	switch {
	case cfg.Source.Postgres != nil:
		metrics := processor.NewMetrics(reg)
		pc, err := postgres.ConfigFrom(cfg.Source.Postgres, cfg.Mappings)
		if err != nil {
			return err
		}
		pc.Logger = log.With("source", "postgres")
		label = "postgres:" + pgDatabase(cfg.Source.Postgres.URL) + "/" + cfg.Source.Postgres.Slot
		r := &pgRunner{cfg: cfg, pc: pc, pub: pub, log: log, metrics: metrics, label: label}
		ready, main = r, r.Run
	case cfg.Source.Cosmos != nil:
		label = "cosmos:" + cfg.Source.Cosmos.Database + "/" + cfg.Source.Cosmos.Container
		cr := &cosmosReady{}
		ready = cr
		main = func(ctx context.Context) error {
			return runCosmos(ctx, cfg, pub, log, reg, func(r *cosmos.Runner) { cr.r.Store(r) })
		}
	}

	if cfg.Server.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Server.Listen)
		if err != nil {
			return fmt.Errorf("server.listen: %w", err)
		}
		var admin http.Handler
		if cfg.Server.AdminToken != "" {
			admin = adminHandler(cfg.Server.AdminToken, cfgPath)
		}
		log.Info("operations endpoint", "url", "http://"+ln.Addr().String(), "paths", "/healthz /readyz /metrics", "admin", admin != nil)
		parts = append(parts, func(ctx context.Context) error { return serveOps(ctx, ln, reg, ready, admin) })
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
	log.Info("changecast running", "source", label, "publish", cfg.Publish.Target)
	perr := main(ctx)
	stopParts()
	wg.Wait()
	close(errs)
	for e := range errs {
		perr = errors.Join(perr, e)
	}
	if perr == nil {
		log.Info("changecast stopped cleanly")
	}
	return perr
}

func serveOps(ctx context.Context, ln net.Listener, reg *prometheus.Registry, ready readiness, admin http.Handler) error {
	mux := http.NewServeMux()
	if admin != nil {
		mux.Handle("/admin/", admin)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if ready != nil && !ready.Ready() {
			http.Error(w, "not ready: source not streaming", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
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

// pgDatabase names the database of a URL for the envelope's source label.
func pgDatabase(url string) string {
	if i := strings.LastIndex(url, "/"); i >= 0 && strings.Contains(url, "://") {
		db := url[i+1:]
		if j := strings.IndexByte(db, '?'); j >= 0 {
			db = db[:j]
		}
		if db != "" {
			return db
		}
	}
	return "postgres"
}

// cosmosReady answers /readyz once the Cosmos runner holds a streaming lease.
type cosmosReady struct{ r atomic.Pointer[cosmos.Runner] }

func (c *cosmosReady) Ready() bool {
	r := c.r.Load()
	return r != nil && r.Ready()
}
