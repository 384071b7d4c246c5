package main

import (
	"context"
	"flag"
	"fmt"
	"io"
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
	_ = cfg
	fmt.Fprintln(stderr, "run: not built yet")
	return 1
}
