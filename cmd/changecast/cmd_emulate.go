package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	emulator "github.com/changecast/changecast/emulator/cosmos"
)

const emulateUsage = `Usage:
  changecast emulate cosmos [--listen 127.0.0.1:8091] [--partitions N] [--key K]
                            [--region NAME] [--consistency LEVEL] [flags]

Serves an in-memory Azure Cosmos DB gateway (REST API, master-key auth,
change feed, partition key ranges, splits) for local development with the
official Cosmos DB SDKs. Databases and containers are created by the SDKs'
create calls, or on first data use (items, queries, change feed). Control routes (no auth, keep it on loopback):
  POST /_admin/split?db=DB&coll=COLL&range=ID        split a partition key range
  POST /_admin/merge?db=DB&coll=COLL&left=A&right=B  merge two adjacent ranges
  POST /_admin/fail?status=429&count=N[&kind=changefeed,read]  inject failures
  POST /_admin/containers?db=DB&coll=COLL&pk=/path&partitions=N
  GET  /_admin/pkranges?db=DB&coll=COLL, GET /_admin/stats
`

// cmdEmulate runs a local emulator. Only "cosmos" exists: a Cosmos DB
// gateway emulator (package emulator/cosmos), served on a real listener until
// ctx ends (SIGINT/SIGTERM), which exits 0.
func cmdEmulate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "cosmos" {
		fmt.Fprint(stderr, emulateUsage)
		return 2
	}
	fs := flag.NewFlagSet("emulate cosmos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, emulateUsage, "\nFlags:\n"); fs.PrintDefaults() }
	defKey := os.Getenv("CHANGECAST_COSMOS_KEY")
	if defKey == "" {
		defKey = emulator.DefaultKey
	}
	listen := fs.String("listen", "127.0.0.1:8091", "address to serve on")
	partitions := fs.Int("partitions", 1, "partition key ranges (feed ranges) of each new container")
	key := fs.String("key", defKey, "base64 account master key (default $CHANGECAST_COSMOS_KEY, else the well-known emulator key)")
	pkPath := fs.String("partition-key", "/id", "partition key path of containers created on first use")
	noAuto := fs.Bool("no-auto-create", false, "answer 404 for missing databases and containers, like the service")
	allowAAD := fs.Bool("allow-aad", false, "accept any Microsoft Entra ID bearer token without checking it")
	region := fs.String("region", "Local", "region name the account advertises (what SDKs' preferred regions match and diagnostics show)")
	consistency := fs.String("consistency", "Session", "default consistency level the account advertises: "+strings.Join(emulator.ConsistencyLevels, ", "))
	verbose := fs.Bool("v", false, "log every request")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *partitions < 1 {
		fmt.Fprintln(stderr, "changecast emulate cosmos: --partitions must be at least 1")
		return 2
	}
	if !slices.Contains(emulator.ConsistencyLevels, *consistency) {
		fmt.Fprintf(stderr, "changecast emulate cosmos: --consistency %q is not one of %s\n", *consistency, strings.Join(emulator.ConsistencyLevels, ", "))
		return 2
	}
	if strings.TrimSpace(*region) == "" {
		fmt.Fprintln(stderr, "changecast emulate cosmos: --region must not be empty")
		return 2
	}
	if _, err := base64.StdEncoding.DecodeString(*key); err != nil || *key == "" {
		fmt.Fprintln(stderr, "changecast emulate cosmos: --key must be base64 (as Cosmos DB account keys are)")
		return 2
	}
	srv, err := emulator.NewServer(
		emulator.WithKey(*key),
		emulator.WithPartitions(*partitions),
		emulator.WithDefaultPartitionKeyPath(*pkPath),
		emulator.WithAutoCreate(!*noAuto),
		emulator.WithAllowAAD(*allowAAD),
		emulator.WithAdminRoutes(true),
		emulator.WithRegion(*region),
		emulator.WithConsistencyLevel(*consistency),
	)
	if err != nil {
		fmt.Fprintln(stderr, "changecast emulate cosmos:", err)
		return 2
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(stderr, "changecast emulate cosmos:", err)
		return 1
	}
	var h http.Handler = srv.Handler()
	if *verbose {
		h = logRequests(slog.New(slog.NewTextHandler(stderr, nil)), h)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}

	endpoint := "http://" + printableAddr(ln.Addr()) + "/"
	fmt.Fprintf(stdout, "Cosmos DB emulator listening on %s\n", endpoint)
	fmt.Fprintf(stdout, "endpoint: %s\n", endpoint)
	fmt.Fprintf(stdout, "key: %s\n", *key)
	fmt.Fprintf(stdout, "COSMOS_CONNECTION_STRING=AccountEndpoint=%s;AccountKey=%s;\n", endpoint, *key)
	fmt.Fprintf(stdout, "split a range: curl -X POST '%s_admin/split?db=DB&coll=COLL&range=0'\n", endpoint)

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		fmt.Fprintln(stderr, "changecast emulate cosmos:", err)
		return 1
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil {
		// Long polls still running after the grace period are cut.
		_ = hs.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(stderr, "changecast emulate cosmos:", err)
		return 1
	}
	return 0
}

// printableAddr turns a wildcard listen address into one a client on the
// same machine can dial. The gateway itself advertises whatever Host the
// client used, so remote clients keep working.
func printableAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return a.String()
	}
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(tcp.Port))
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func logRequests(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		start := time.Now()
		next.ServeHTTP(rec, r)
		log.Info("request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
			"substatus", rec.Header().Get("x-ms-substatus"), "dur", time.Since(start))
	})
}
