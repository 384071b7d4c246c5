package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"os"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/worker"
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
	if err := worker.Run(ctx, cfg, worker.Options{Stdout: stdout, Stderr: stderr, Logger: log}); err != nil {
		log.Error("changecast stopped", "err", err)
		if changefeed.IsFatal(err) {
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
