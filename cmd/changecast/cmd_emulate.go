package main

import (
	"context"
	"fmt"
	"io"
)

// cmdEmulate runs a local emulator (stub until cosmostest lands).
func cmdEmulate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "changecast emulate: not built yet")
	return 1
}
