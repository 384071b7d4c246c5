package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/schema"
)

// newPublisher builds the hub or signalr publisher; run, when not nil, is a
// long-lived part the worker must run (the built-in hub's server).
func newPublisher(ctx context.Context, cfg *schema.Config, log *slog.Logger) (publish.Publisher, func(context.Context) error, error) {
	return nil, nil, fmt.Errorf("publish.target: %q is not available in this build yet", cfg.Publish.Target)
}
