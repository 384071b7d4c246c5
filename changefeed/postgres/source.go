package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/changecast/changecast/changefeed"
)

// Config configures a Source. Build it from config.PostgresSource with
// the config file in the worker assembly; zero durations take the
// defaults below.
type Config struct {
	URL         string
	Slot        string
	Publication string
	Tables      []string // schema.table
	// Keys overrides the document key of a table (column names); by default
	// the primary key.
	Keys           map[string][]string
	StatusInterval time.Duration
	// Heartbeat is the interval of non-transactional logical messages that
	// give a quiet publication an LSN to confirm; negative disables.
	Heartbeat  time.Duration
	MinBackoff time.Duration // default 200 ms
	MaxBackoff time.Duration // default 15 s
	Logger     *slog.Logger
}

// Defaults of Config.
const (
	DefaultStatusInterval = 5 * time.Second
	DefaultHeartbeat      = 10 * time.Second
)

func (c *Config) defaults() {
	if c.StatusInterval <= 0 {
		c.StatusInterval = DefaultStatusInterval
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 200 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 15 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Source streams a PostgreSQL publication from a permanent logical
// replication slot (pgoutput, proto 1). It implements changefeed.Source.
type Source struct {
	cfg     Config
	flushed atomic.Uint64 // durable watermark from Checkpoint: the flush LSN we report
	ready   atomic.Bool
	// serverVersion is server_version_num, read at setup.
	serverVersion atomic.Int64
	tm            *pgtype.Map
	wins          *windows // snapshot windows to report decoded transactions to

	runCtx         context.Context // Run's, for background jobs
	jobs           sync.WaitGroup  // resnapshots; Run waits for them
	resnapshotting atomic.Bool

	mu     sync.Mutex
	keys   map[string][]string // table → key columns, from setup
	warned map[string]bool     // table.column of unknown types already warned about
}

// New returns a source; Run starts it.
func New(cfg Config) *Source {
	cfg.defaults()
	return &Source{cfg: cfg, tm: pgtype.NewMap(), warned: map[string]bool{}, wins: &windows{}}
}

// Ready reports whether the source is connected and streaming.
func (s *Source) Ready() bool { return s.ready.Load() }

// Checkpoint records that everything up to pos was published; the next
// standby status update reports it as the flush LSN. Older positions (from
// replays after a reconnect) are ignored.
func (s *Source) Checkpoint(_ context.Context, pos changefeed.Position) error {
	lsn, err := parseLSN(string(pos))
	if err != nil {
		return fmt.Errorf("postgres checkpoint %q: %w", pos, err)
	}
	for {
		cur := s.flushed.Load()
		if uint64(lsn) <= cur || s.flushed.CompareAndSwap(cur, uint64(lsn)) {
			return nil
		}
	}
}

// FlushedLSN is the last position reported as durable.
func (s *Source) FlushedLSN() pglogrepl.LSN { return pglogrepl.LSN(s.flushed.Load()) }

// FatalError is a problem that retrying cannot fix (configuration or server
// settings); Run returns it.
type FatalError struct{ Err error }

func (e *FatalError) Error() string { return e.Err.Error() }
func (e *FatalError) Unwrap() error { return e.Err }

// Fatal marks the error for changefeed.IsFatal: the Runner stops.
func (e *FatalError) Fatal() bool { return true }

func fatalf(format string, args ...any) error { return &FatalError{fmt.Errorf(format, args...)} }

// Run streams until ctx ends. It reconnects with backoff after a dropped
// connection or a server restart and resumes from confirmed_flush_lsn; it
// returns early only with a *FatalError.
func (s *Source) Run(ctx context.Context, out chan<- changefeed.Event) error {
	s.runCtx = ctx
	defer s.jobs.Wait()
	backoff := s.cfg.MinBackoff
	var failingSince, lastLog time.Time
	attempts := 0
	for {
		started := time.Now()
		err := s.session(ctx, out)
		s.ready.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		var fe *FatalError
		if errors.As(err, &fe) {
			return err
		}
		if time.Since(started) > 30*time.Second {
			// It was streaming for a while: a fresh failure, not a storm.
			backoff, attempts, failingSince = s.cfg.MinBackoff, 0, time.Time{}
		}
		attempts++
		if failingSince.IsZero() {
			failingSince = time.Now()
		}
		// One line per attempt window, not one per attempt.
		if attempts == 1 || time.Since(lastLog) >= 30*time.Second {
			s.cfg.Logger.Warn("postgres replication connection failed; retrying with backoff",
				"err", err, "attempts", attempts, "failing_for", time.Since(failingSince).Round(time.Second).String(), "next_in", backoff)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, s.cfg.MaxBackoff)
	}
}

// session is one connection's life: setup, start, stream.
func (s *Source) session(ctx context.Context, out chan<- changefeed.Event) error {
	db, err := pgx.Connect(ctx, s.cfg.URL)
	if err != nil {
		return err
	}
	defer db.Close(context.WithoutCancel(ctx))
	slotExists, err := s.setup(ctx, db)
	if err != nil {
		return err
	}

	rcfg, err := pgconn.ParseConfig(s.cfg.URL)
	if err != nil {
		return fatalf("source.postgres.url: %v", err)
	}
	rcfg.RuntimeParams["replication"] = "database"
	rcfg.RuntimeParams["application_name"] = "changecast"
	// Timestamps arrive as text in the session's zone; UTC keeps them plain.
	rcfg.RuntimeParams["timezone"] = "UTC"
	rcfg.RuntimeParams["datestyle"] = "ISO"
	conn, err := pgconn.ConnectConfig(ctx, rcfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))

	if !slotExists {
		// The publication exists by now: a slot created before its
		// publication can report it missing.
		_, err := pglogrepl.CreateReplicationSlot(ctx, conn, s.cfg.Slot, "pgoutput",
			pglogrepl.CreateReplicationSlotOptions{SnapshotAction: "NOEXPORT_SNAPSHOT"})
		if err != nil {
			return fmt.Errorf("create replication slot %s: %w", s.cfg.Slot, err)
		}
		s.cfg.Logger.Info("created replication slot", "slot", s.cfg.Slot)
	}
	args := []string{"proto_version '1'", "publication_names " + quoteLiteral(quoteIdent(s.cfg.Publication))}
	messages := s.serverVersion.Load() >= 140000
	if messages {
		// Heartbeats and snapshot watermarks are logical messages
		// (PostgreSQL 14 or later).
		args = append(args, "messages 'true'")
	}
	// LSN 0 resumes at the slot's confirmed_flush_lsn.
	if err := pglogrepl.StartReplication(ctx, conn, s.cfg.Slot, 0, pglogrepl.StartReplicationOptions{PluginArgs: args}); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "55006" {
			// The slot is active elsewhere (another instance, or our own
			// previous connection not yet reaped): retry.
			return fmt.Errorf("slot %s is in use by another connection: %w", s.cfg.Slot, err)
		}
		return fmt.Errorf("start replication: %w", err)
	}
	s.ready.Store(true)
	s.cfg.Logger.Info("streaming", "slot", s.cfg.Slot, "publication", s.cfg.Publication, "from", s.FlushedLSN().String())

	var hbErr chan error
	if s.cfg.Heartbeat > 0 && messages {
		hbCtx, stop := context.WithCancel(ctx)
		defer stop()
		hbErr = make(chan error, 1)
		go func() { hbErr <- s.heartbeat(hbCtx, db) }()
		defer func() { stop(); <-hbErr }()
	}
	return s.stream(ctx, conn, out)
}

// heartbeat writes a tiny non-transactional logical message on the normal
// connection every interval, so the stream gets an LSN to confirm even when
// the published tables are quiet while others write WAL.
func (s *Source) heartbeat(ctx context.Context, db *pgx.Conn) error {
	t := time.NewTicker(s.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, err := db.Exec(ctx, "SELECT pg_logical_emit_message(false, $1, '')", heartbeatPrefix); err != nil && ctx.Err() == nil {
				s.cfg.Logger.Debug("heartbeat failed", "err", err)
			}
		}
	}
}

const heartbeatPrefix = "changecast.heartbeat"

// stream reads the replication stream and emits events until an error.
func (s *Source) stream(ctx context.Context, conn *pgconn.PgConn, out chan<- changefeed.Event) error {
	d := &decoder{src: s, rels: map[uint32]*relation{}}
	status := func(reply bool) error {
		lsn := pglogrepl.LSN(s.flushed.Load())
		return pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{
			WALWritePosition: lsn, WALFlushPosition: lsn, WALApplyPosition: lsn, ReplyRequested: reply})
	}
	ticker := time.NewTicker(s.cfg.StatusInterval)
	defer ticker.Stop()
	// emit blocks while the pipeline is full, answering the server all the
	// while so wal_sender_timeout never drops a slow consumer.
	emit := func(ev changefeed.Event) error {
		// Most events find room: one cheap send, not a three-way select.
		select {
		case out <- ev:
			return nil
		default:
		}
		for {
			select {
			case out <- ev:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			case <-ticker.C:
				if err := status(false); err != nil {
					return err
				}
			}
		}
	}
	// Reads use a deadline on the socket (the next status update) and no
	// context: a per-message context costs a watcher and a timer, and a busy
	// stream reads thousands of messages per status period. Cancellation
	// cuts the socket's deadline short instead.
	nc := conn.Conn()
	stopWatch := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) })
	defer stopWatch()
	next := time.Now().Add(s.cfg.StatusInterval)
	nc.SetReadDeadline(next)
	var lastPos uint64 // the last position emitted in this session
	for {
		if !time.Now().Before(next) {
			if err := status(false); err != nil {
				return err
			}
			next = time.Now().Add(s.cfg.StatusInterval)
			nc.SetReadDeadline(next)
		}
		msg, err := conn.ReceiveMessage(context.Background())
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if pgconn.Timeout(err) {
				continue
			}
			return err
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if len(m.Data) == 0 {
				continue
			}
			switch m.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
				if err != nil {
					return fmt.Errorf("parse keepalive: %w", err)
				}
				// Nothing in flight (not inside a transaction, and every
				// position emitted is checkpointed): everything the server
				// sent before this keepalive is published, so its WAL end
				// can be confirmed. Quiet publications advance this way, and
				// a server shutting down, which waits until the client has
				// confirmed all it sent, is not held up.
				if !d.inTx && s.flushed.Load() >= lastPos {
					_ = s.Checkpoint(ctx, changefeed.Position(lsnText(ka.ServerWALEnd)))
				}
				if ka.ReplyRequested {
					next = time.Time{}
				}
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(m.Data[1:])
				if err != nil {
					return fmt.Errorf("parse xlogdata: %w", err)
				}
				evs, err := d.decode(xld.WALData)
				if err != nil {
					return err
				}
				for _, ev := range evs {
					if ev.Position != "" {
						if lsn, err := parseLSN(string(ev.Position)); err == nil {
							lastPos = uint64(lsn)
						}
					}
					if err := emit(ev); err != nil {
						return err
					}
				}
			}
		case *pgproto3.ErrorResponse:
			return pgconn.ErrorResponseToPgError(m)
		default:
			return fmt.Errorf("unexpected replication message %T", msg)
		}
	}
}

// setup checks the server and the tables, creates the publication, and
// reports whether the slot exists. Problems the user must fix are fatal.
func (s *Source) setup(ctx context.Context, db *pgx.Conn) (slotExists bool, err error) {
	var walLevel string
	if err := db.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil {
		return false, err
	}
	var version int64
	if err := db.QueryRow(ctx, "SELECT current_setting('server_version_num')::int8").Scan(&version); err != nil {
		return false, err
	}
	s.serverVersion.Store(version)
	if walLevel != "logical" {
		return false, fatalf("PostgreSQL has wal_level=%s; logical replication needs wal_level=logical. "+
			"Fix: run ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL", walLevel)
	}
	keys := map[string][]string{}
	var problems []string
	for _, t := range s.cfg.Tables {
		sch, name, _ := splitTable(t)
		var oid uint32
		var ident, kind string
		err := db.QueryRow(ctx, `SELECT c.oid, c.relreplident::text, c.relkind::text FROM pg_class c
			JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`, sch, name).Scan(&oid, &ident, &kind)
		if errors.Is(err, pgx.ErrNoRows) {
			problems = append(problems, fmt.Sprintf("table %s does not exist", t))
			continue
		}
		if err != nil {
			return false, err
		}
		cols, err := queryStrings(ctx, db, `SELECT attname FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped`, oid)
		if err != nil {
			return false, err
		}
		pk, err := queryStrings(ctx, db, `SELECT a.attname FROM pg_index i
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
			WHERE i.indrelid = $1 AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)`, oid)
		if err != nil {
			return false, err
		}
		switch {
		case ident == "n":
			problems = append(problems, fmt.Sprintf("table %s has REPLICA IDENTITY NOTHING: its updates and deletes would fail once published; run ALTER TABLE %s REPLICA IDENTITY DEFAULT (with a primary key) or FULL", t, t))
		case ident == "d" && len(pk) == 0:
			problems = append(problems, fmt.Sprintf("table %s has no primary key and REPLICA IDENTITY DEFAULT: its updates and deletes would fail once published; add a primary key or run ALTER TABLE %s REPLICA IDENTITY FULL", t, t))
		}
		key := pk
		if k, ok := s.cfg.Keys[t]; ok {
			for _, c := range k {
				if !slices.Contains(cols, c) {
					problems = append(problems, fmt.Sprintf("key column %s does not exist in table %s", c, t))
				}
			}
			key = k
		}
		if len(key) == 0 {
			problems = append(problems, fmt.Sprintf("table %s has no primary key; set key: [/column] in its mapping", t))
		}
		keys[t] = key
	}
	if len(problems) > 0 {
		return false, fatalf("%s", strings.Join(problems, "; "))
	}
	s.mu.Lock()
	s.keys = keys
	s.mu.Unlock()

	if err := s.ensurePublication(ctx, db); err != nil {
		return false, err
	}
	var plugin, slotDB, thisDB string
	var confirmed *string
	err = db.QueryRow(ctx, `SELECT plugin, coalesce(database, ''), current_database(), confirmed_flush_lsn::text
		FROM pg_replication_slots WHERE slot_name = $1`, s.cfg.Slot).Scan(&plugin, &slotDB, &thisDB, &confirmed)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if slotDB != thisDB {
		// Slot names are global to the server; a logical slot belongs to one
		// database.
		return false, fatalf("replication slot %s belongs to database %q, not %q; choose another source.postgres.slot", s.cfg.Slot, slotDB, thisDB)
	}
	if plugin != "pgoutput" {
		return false, fatalf("replication slot %s uses plugin %s, not pgoutput; drop it or choose another source.postgres.slot", s.cfg.Slot, plugin)
	}
	if confirmed != nil {
		if lsn, err := pglogrepl.ParseLSN(*confirmed); err == nil {
			_ = s.Checkpoint(ctx, changefeed.Position(lsn.String()))
		}
	}
	return true, nil
}

func (s *Source) ensurePublication(ctx context.Context, db *pgx.Conn) error {
	var exists bool
	if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, s.cfg.Publication).Scan(&exists); err != nil {
		return err
	}
	var missing []string
	if exists {
		have, err := queryStrings(ctx, db, `SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1`, s.cfg.Publication)
		if err != nil {
			return err
		}
		for _, t := range s.cfg.Tables {
			if !slices.Contains(have, t) {
				missing = append(missing, t)
			}
		}
	} else {
		missing = s.cfg.Tables
	}
	if len(missing) == 0 {
		return nil
	}
	idents := make([]string, len(missing))
	for i, t := range missing {
		sch, name, _ := splitTable(t)
		idents[i] = pgx.Identifier{sch, name}.Sanitize()
	}
	q := fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s", quoteIdent(s.cfg.Publication), strings.Join(idents, ", "))
	if exists {
		q = fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s", quoteIdent(s.cfg.Publication), strings.Join(idents, ", "))
	}
	if _, err := db.Exec(ctx, q); err != nil {
		return fmt.Errorf("%s: %w", q, err)
	}
	s.cfg.Logger.Info("publication updated", "publication", s.cfg.Publication, "added", missing)
	return nil
}

func (s *Source) keyColumns(table string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[table]
}

// warnUnknown logs once per column that a type is sent as its text form.
func (s *Source) warnUnknown(table, col string, oid uint32) {
	s.mu.Lock()
	k := table + "." + col
	seen := s.warned[k]
	s.warned[k] = true
	s.mu.Unlock()
	if !seen {
		s.cfg.Logger.Warn("column has a type changecast does not know; sending its text form", "table", table, "column", col, "type_oid", oid)
	}
}

func queryStrings(ctx context.Context, db *pgx.Conn, q string, args ...any) ([]string, error) {
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// splitTable splits "schema.table" (the config file checked the form).
func splitTable(t string) (schemaName, table string, ok bool) {
	s, n, found := strings.Cut(t, ".")
	return s, n, found && s != "" && n != ""
}

func quoteIdent(s string) string { return pgx.Identifier{s}.Sanitize() }

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// decoder turns pgoutput messages into events; it holds the per-session
// state (the relation cache and the open transaction).
type decoder struct {
	src        *Source
	rels       map[uint32]*relation
	inTx       bool
	commitLSN  pglogrepl.LSN
	commitTime time.Time
	idx        int
	txn        txnRecord // for snapshot windows: what this transaction changed
	marks      []uint64  // snapshot watermarks this transaction carries
	vprefix    string    // "commitLSN." of the open transaction

	// Reused between messages (the stream loop is done with a message's
	// events before it decodes the next).
	oldCols, newCols []tupleCol
	evs              []changefeed.Event
}

func (d *decoder) version() string {
	d.idx++
	if d.vprefix == "" {
		d.vprefix = strconv.FormatUint(uint64(d.commitLSN), 10) + "."
	}
	return d.vprefix + strconv.Itoa(d.idx)
}

func (d *decoder) rel(id uint32) (*relation, error) {
	r, ok := d.rels[id]
	if !ok {
		return nil, fmt.Errorf("pgoutput: change for relation %d before its Relation message", id)
	}
	return r, nil
}

func (d *decoder) decode(data []byte) ([]changefeed.Event, error) {
	if len(data) > 0 {
		switch data[0] {
		case 'I', 'U', 'D':
			// Row changes, the bulk of a stream, are parsed here without
			// copying each column (see parseTuple).
			return d.decodeRow(data)
		}
	}
	msg, err := parsePgoutput(data)
	if err != nil {
		return nil, fmt.Errorf("parse pgoutput message: %w", err)
	}
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		coll := m.Namespace + "." + m.RelationName
		r := &relation{msg: m, collection: coll, identFull: m.ReplicaIdentity == 'f'}
		for _, k := range d.src.keyColumns(coll) {
			for i, c := range m.Columns {
				if c.Name == k {
					r.key = append(r.key, i)
				}
			}
		}
		d.rels[m.RelationID] = r
	case *pglogrepl.BeginMessage:
		d.inTx, d.commitLSN, d.commitTime, d.idx = true, m.FinalLSN, m.CommitTime, 0
		// Every version of the transaction starts with its commit LSN.
		d.vprefix = strconv.FormatUint(uint64(m.FinalLSN), 10) + "."
		d.txn.reset(m.Xid)
		d.marks = d.marks[:0]
	case *pglogrepl.CommitMessage:
		d.inTx = false
		d.src.wins.commit(&d.txn, d.commitLSN, d.marks)
		return []changefeed.Event{{Position: changefeed.Position(lsnText(m.TransactionEndLSN))}}, nil
	case *pglogrepl.LogicalDecodingMessage:
		if !m.Transactional && m.Prefix == heartbeatPrefix && !d.inTx {
			return []changefeed.Event{{Position: changefeed.Position(lsnText(m.LSN))}}, nil
		}
		if m.Transactional && m.Prefix == watermarkPrefix {
			if id, err := strconv.ParseUint(string(m.Content), 10, 64); err == nil {
				d.marks = append(d.marks, id)
				// A resnapshot's page is republished here, at its
				// watermark: every change before it is decoded by now.
				if evs := d.src.wins.inject(id, d); len(evs) > 0 {
					return evs, nil
				}
			}
		}
		if m.Transactional && m.Prefix == resnapshotPrefix && (len(m.Content) == 0 || string(m.Content) == d.src.cfg.Slot) {
			d.src.startResnapshot()
		}
	case *pglogrepl.TruncateMessage:
		var evs []changefeed.Event
		for _, id := range m.RelationIDs {
			r, err := d.rel(id)
			if err != nil {
				return nil, err
			}
			evs = append(evs, changefeed.Event{Change: &changefeed.Change{Collection: r.collection, Op: changefeed.Truncate,
				Version: d.version(), CommitTime: d.commitTime}})
			d.txn.truncs = append(d.txn.truncs, r.collection)
		}
		return evs, nil
	}
	return nil, nil
}

// decodeRow decodes an Insert ('I'), Update ('U') or Delete ('D')
// message: the relation id, then tuples each led by a byte saying which
// ('N' new, 'K' old key, 'O' old row).
func (d *decoder) decodeRow(data []byte) ([]changefeed.Event, error) {
	kind := data[0]
	if len(data) < 6 {
		return nil, fmt.Errorf("parse pgoutput message: %c: short", kind)
	}
	r, err := d.rel(binary.BigEndian.Uint32(data[1:]))
	if err != nil {
		return nil, err
	}
	rest := data[5:]
	var oldKind byte
	var old, cur []tupleCol
	if rest[0] == 'K' || rest[0] == 'O' {
		oldKind = rest[0]
		if old, rest, err = parseTuple(rest[1:], d.oldCols); err != nil {
			return nil, err
		}
		d.oldCols = old
	}
	if kind != 'D' {
		if len(rest) == 0 || rest[0] != 'N' {
			return nil, fmt.Errorf("parse pgoutput message: %c: no new tuple", kind)
		}
		if cur, _, err = parseTuple(rest[1:], d.newCols); err != nil {
			return nil, err
		}
		d.newCols = cur
	}
	switch kind {
	case 'I':
		after := decodeTuple(d.src.tm, r, cur, false, d.unknown(r))
		return d.one(d.change(r, changefeed.Insert, nil, false, after)), nil
	case 'D':
		if old == nil {
			return nil, fmt.Errorf("parse pgoutput message: D: no old tuple")
		}
		partial := oldKind != 'O'
		before := decodeTuple(d.src.tm, r, old, partial, nil)
		return d.one(d.change(r, changefeed.Delete, before.doc, partial, rowResult{})), nil
	}
	return d.update(r, old, oldKind, cur), nil
}

// one is the event list of one change, reusing the decoder's slice: the
// stream loop emits the events before it decodes the next message.
func (d *decoder) one(c *changefeed.Change) []changefeed.Event {
	d.evs = append(d.evs[:0], changefeed.Event{Change: c})
	return d.evs
}

func (d *decoder) update(r *relation, oldTup []tupleCol, oldKind byte, newTup []tupleCol) []changefeed.Event {
	tm := d.src.tm
	after := decodeTuple(tm, r, newTup, false, d.unknown(r))
	var before rowResult
	partial := oldKind != 'O'
	if oldTup != nil {
		before = decodeTupleLike(tm, r, oldTup, partial, nil, newTup, after.doc)
	}
	if !partial && len(after.unchanged) > 0 {
		// REPLICA IDENTITY FULL: the old tuple carries the detoasted
		// value that the new tuple left out.
		var still []string
		for _, col := range after.unchanged {
			if v, ok := before.doc[col]; ok {
				after.doc[col] = v
			} else {
				still = append(still, col)
			}
		}
		after.unchanged = still
	}
	if oldTup != nil {
		oldID, ok1 := docID(r, before.doc)
		newID, ok2 := docID(r, after.doc)
		if ok1 && ok2 && oldID != newID {
			// The key changed: to clients that is one document gone
			// and another one new; the mapper sends both.
			c := d.change(r, changefeed.Update, before.doc, partial, after)
			c.PrevID = oldID
			d.txn.add(docKey{r.collection, oldID})
			return d.one(c)
		}
	}
	var bdoc map[string]any
	if oldTup != nil {
		bdoc = before.doc
	}
	return d.one(d.change(r, changefeed.Update, bdoc, partial, after))
}

func (d *decoder) unknown(r *relation) func(string, uint32) {
	return func(col string, oid uint32) { d.src.warnUnknown(r.collection, col, oid) }
}

func (d *decoder) change(r *relation, op changefeed.Op, before map[string]any, partial bool, after rowResult) *changefeed.Change {
	c := &changefeed.Change{Collection: r.collection, Op: op, Before: before, BeforePartial: partial && before != nil,
		Version: d.version(), CommitTime: d.commitTime, Err: after.err}
	if op != changefeed.Delete {
		c.After = after.doc
		c.Unchanged = after.unchanged
		c.ID, _ = docID(r, after.doc)
	} else {
		c.ID, _ = docID(r, before)
	}
	d.txn.add(docKey{r.collection, c.ID})
	return c
}
