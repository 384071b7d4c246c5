package main

import (
	"context"
	"fmt"
	"io"
)

// cmdHub runs the built-in hub alone (stub until publish/hub lands).
func cmdHub(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "changecast hub: not built yet")
	return 1
}
