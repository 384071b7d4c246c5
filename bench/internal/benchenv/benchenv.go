// Package benchenv is the shared set-up of the bench/ programs: the
// PostgreSQL they write to (CHANGECAST_PG_URL, as scripts/bench.sh starts
// it) and a built-in hub on loopback. Every failure is fatal: these are
// command-line programs.
package benchenv

import (
	"context"
	"log"
	"log/slog"
	"net"
	"os"

	"github.com/jackc/pgx/v5"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/hub"
	"github.com/changecast/changecast/schema/config"
)

// Quiet logs only errors, to stderr, so benchmark output stays readable.
var Quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

// DB is a connection to the benchmark database.
type DB struct {
	URL string
	*pgx.Conn
	slots []string
}

// Open connects to CHANGECAST_PG_URL.
func Open() *DB {
	url := os.Getenv("CHANGECAST_PG_URL")
	if url == "" {
		log.Fatal(`CHANGECAST_PG_URL is not set: eval "$(scripts/pg.sh start)" first (make bench does)`)
	}
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		log.Fatal(err)
	}
	return &DB{URL: url, Conn: c}
}

// Must runs a statement or exits.
func (d *DB) Must(sql string, args ...any) {
	if _, err := d.Exec(context.Background(), sql, args...); err != nil {
		log.Fatalf("%s: %v", sql, err)
	}
}

// Table creates table (dropping an old one) and a publication of it.
func (d *DB) Table(table, columns, publication string) {
	d.Must(`DROP TABLE IF EXISTS ` + table)
	d.Must(`CREATE TABLE ` + table + ` (` + columns + `)`)
	d.Must(`DROP PUBLICATION IF EXISTS ` + publication)
	d.Must(`CREATE PUBLICATION ` + publication + ` FOR TABLE ` + table)
}

// Slot drops an old slot of that name and, when create is set, creates a
// pgoutput slot now (so it sees every change written after this call).
// Close drops it.
func (d *DB) Slot(name string, create bool) {
	d.Exec(context.Background(), `SELECT pg_drop_replication_slot($1)`, name)
	if create {
		d.Must(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, name)
	}
	d.slots = append(d.slots, name)
}

// Close drops the slots and disconnects.
func (d *DB) Close() {
	ctx := context.Background()
	for _, s := range d.slots {
		d.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, s)
	}
	d.Conn.Close(ctx)
}

// Hub starts a built-in hub serving hub orders (anonymous negotiate) on a
// loopback port; stop closes its clients and waits for it.
func Hub() (h *hub.Server, addr string, stop func()) {
	h, err := hub.New(hub.Config{Hubs: []string{"orders"}, Negotiate: hub.NegotiateConfig{Auth: hub.NegotiateAuth{Anonymous: true}}}, hub.WithLogger(Quiet))
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx, ln) }()
	<-h.Listening()
	return h, ln.Addr().String(), func() { cancel(); <-done }
}

// Pipeline runs src through a mapper of mappings and a publish pipeline
// into pub, as the worker assembles one stream (config defaults for the
// shadow).
func Pipeline(src changefeed.Source, mappings []publish.Mapping, pc publish.PipelineConfig, pub publish.Publisher) *changefeed.Processor {
	m, err := publish.NewMapper(mappings, publish.MapperOptions{ShadowSize: config.DefaultShadowSize, Logger: Quiet})
	if err != nil {
		log.Fatal(err)
	}
	if pc.Source == "" {
		pc.Source = "bench"
	}
	pc.Logger = Quiet
	return changefeed.NewProcessor(changefeed.ProcessorConfig{Logger: Quiet}, src, publish.NewPipeline(pc, m, pub))
}
