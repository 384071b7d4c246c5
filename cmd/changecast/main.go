// Command changecast streams database changes to live applications.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `changecast streams database changes to SignalR clients.

Usage:
  changecast run -c config.yaml            run the worker
  changecast hub [flags]                   run the built-in hub alone (a local Azure SignalR emulator)
  changecast emulate cosmos [flags]        run a local Cosmos DB gateway emulator
  changecast leases list -c FILE [--no-lag]  list leases: owner, range, position, lag
  changecast checkpoint reset -c FILE --to beginning|now|<RFC3339>|<LSN>   move every stream's checkpoint
  changecast checkpoint reset -c FILE --resnapshot   republish every row (PostgreSQL)
  changecast config validate -c FILE       check a config file (exit 2 when invalid)
  changecast config schema                 print the config file's JSON Schema
  changecast envelope schema               print the JSON Schema of the batch envelope clients receive
  changecast version
`

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(ctx, args[1:], stdout, stderr)
	case "hub":
		return cmdHub(ctx, args[1:], stdout, stderr)
	case "emulate":
		return cmdEmulate(ctx, args[1:], stdout, stderr)
	case "leases":
		return cmdLeases(ctx, args[1:], stdout, stderr)
	case "checkpoint":
		return cmdCheckpoint(ctx, args[1:], stdout, stderr)
	case "config":
		return cmdConfig(args[1:], stdout, stderr)
	case "envelope":
		return cmdEnvelope(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "changecast", version)
		return 0
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "changecast: unknown command %q\n\n%s", args[0], usage)
	return 2
}
