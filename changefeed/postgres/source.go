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
	// ReplicaIdentity is IdentityFull (the default) or IdentityKeep: see
	// those.
	ReplicaIdentity string
	// OnSlotLost is SlotRecreate (the default) or SlotStop: what to do when
	// the slot was invalidated or dropped.
	OnSlotLost string
	// WALWarnFraction: a WARN when the WAL the slot may still hold back
	// (safe_wal_size) falls under this fraction of max_slot_wal_keep_size.
	// Default 0.2; negative disables.
	WALWarnFraction float64
	// ErrorAfter: connection failures are logged at WARN, and at ERROR
	// once they have lasted this long. Default 2 minutes.
	ErrorAfter time.Duration
	Logger     *slog.Logger
	Metrics    *Metrics // nil: none
}

// ReplicaIdentity and OnSlotLost choices.
const (
	// IdentityFull sets REPLICA IDENTITY FULL on every streamed table that
	// does not have it, at start: deletes and updates then carry the whole
	// old row, so the groups a row leaves are always known (see
	// docs/postgres.md).
	IdentityFull = "full"
	// IdentityKeep leaves tables as they are; a delete or a routing move of
	// a row whose old values the stream does not carry, and that
	// changecast has not seen, is sent to the whole hub as a delete.
	IdentityKeep = "keep"
	// SlotRecreate creates a lost slot anew and starts a new epoch for
	// every stream: clients reload from snapshots.
	SlotRecreate = "recreate"
	// SlotStop stops with a FatalError, for a person to decide.
	SlotStop = "stop"
)

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
	if c.ReplicaIdentity == "" {
		c.ReplicaIdentity = IdentityFull
	}
	if c.OnSlotLost == "" {
		c.OnSlotLost = SlotRecreate
	}
	if c.WALWarnFraction == 0 {
		c.WALWarnFraction = 0.2
	}
	if c.ErrorAfter <= 0 {
		c.ErrorAfter = 2 * time.Minute
	}
	if c.Metrics == nil {
		c.Metrics = &Metrics{}
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

	warnedIdentity map[string]bool // tables warned about at setup (once per Source)
	// resumeFrom is the position the lease store holds (see Slot.Source):
	// a slot missing while it is set was dropped, not never created.
	resumeFrom string
	streamed   bool // a session of this Source started streaming
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
// returns early only with a *FatalError: a configuration problem, or an
// error retrying cannot fix (a wrong password, a role without REPLICATION,
// a database that does not exist; see permanent).
func (s *Source) Run(ctx context.Context, out chan<- changefeed.Event) error {
	s.runCtx = ctx
	defer s.jobs.Wait()
	backoff := s.cfg.MinBackoff
	var failingSince, lastLog time.Time
	attempts := 0
	loud := false            // logged at ERROR already in this failure
	var adminEnded time.Time // when the server last ended the session on purpose
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
		if fe := permanent(err, s.cfg); fe != nil {
			return fe
		}
		if time.Since(started) > 30*time.Second {
			// It was streaming for a while: a fresh failure, not a storm.
			backoff, attempts, failingSince, loud = s.cfg.MinBackoff, 0, time.Time{}, false
		}
		attempts++
		if failingSince.IsZero() {
			failingSince = time.Now()
		}
		// One line per attempt window, not one per attempt; at ERROR once
		// the failure has lasted ErrorAfter (readiness is false all along).
		failing := time.Since(failingSince)
		if endedByAdmin(err) {
			// pg_terminate_backend: `changecast checkpoint reset` ends the
			// slot's connection to move it, which is routine. A server
			// shutting down says the same; then the reconnect fails and
			// that is logged at WARN at once (lastLog is cleared).
			s.cfg.Logger.Info("postgres replication connection ended by the server (a checkpoint reset, pg_terminate_backend or a shutdown); reconnecting", "err", err)
			lastLog, adminEnded = time.Time{}, time.Now()
		} else if heldAfterReset(err, time.Since(adminEnded)) {
			// The ended walsender may hold the slot a moment longer
			// while it exits: expected after a reset, not a failure yet.
			s.cfg.Logger.Debug("replication slot still held by the connection the server ended; retrying", "err", err, "next_in", backoff.String())
		} else if attempts == 1 || time.Since(lastLog) >= 30*time.Second || !loud && failing >= s.cfg.ErrorAfter {
			lvl := slog.LevelWarn
			if failing >= s.cfg.ErrorAfter {
				lvl, loud = slog.LevelError, true
			}
			s.cfg.Logger.Log(ctx, lvl, "postgres replication connection failed; retrying with backoff",
				"err", err, "attempts", attempts, "failing_for", failing.Round(time.Second).String(), "next_in", backoff.String())
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

// slotReleaseGrace is how long after the server ended the session a slot
// still in use (55006) is taken for the ended walsender exiting.
const slotReleaseGrace = 10 * time.Second

// heldAfterReset reports whether err is the slot still active for another
// connection (55006 object_in_use) within slotReleaseGrace of the server
// ending the session: the ended walsender, still exiting.
func heldAfterReset(err error, sinceEnded time.Duration) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "55006" && sinceEnded < slotReleaseGrace
}

// endedByAdmin reports whether the server ended the session with
// admin_shutdown (57P01): pg_terminate_backend, or a fast shutdown.
func endedByAdmin(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "57P01"
}

// permanent turns the errors that retrying cannot fix into a *FatalError
// naming the fix; nil for the others (connection refused, a server
// starting or shutting down, too many connections: retried).
func permanent(err error, cfg Config) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return nil
	}
	switch {
	case pe.Code == "28P01":
		return fatalf("PostgreSQL refused the password (%s). Fix: correct the password in source.postgres.url", pe.Message)
	case pe.Code == "28000":
		return fatalf("PostgreSQL refused the connection (%s). Fix: check the user in source.postgres.url and that pg_hba.conf lets it connect to the database", pe.Message)
	case pe.Code == "3D000":
		return fatalf("%s. Fix: create the database or correct source.postgres.url", pe.Message)
	case pe.Code == "42501" && strings.Contains(pe.Message, "replication"):
		return fatalf("the role of source.postgres.url may not use logical replication (%s). Fix: ALTER ROLE <user> REPLICATION (on Azure: grant azure_pg_admin and set azure.replication_support), or connect as a role that has it", pe.Message)
	case pe.Code == "42501":
		return fatalf("%s. Fix: grant the role of source.postgres.url what it needs (it reads the streamed tables, creates publication %s when missing, and sets REPLICA IDENTITY FULL unless source.postgres.replicaIdentity is keep)", pe.Message, cfg.Publication)
	case pe.Code == "42704" && strings.Contains(pe.Message, "publication"):
		return fatalf("%s: the slot reads publications as they were when its changes were written. Fix: create the publication again (it must exist at the slot's position), or drop slot %s to start anew", pe.Message, cfg.Slot)
	}
	return nil
}

// session is one connection's life: setup, start, stream.
func (s *Source) session(ctx context.Context, out chan<- changefeed.Event) error {
	db, err := pgx.Connect(ctx, s.cfg.URL)
	if err != nil {
		return err
	}
	defer db.Close(context.WithoutCancel(ctx))
	slot, err := s.setup(ctx, db)
	if err != nil {
		return err
	}
	if !slot.exists && slot.lost == "" && (s.resumeFrom != "" || s.streamed) {
		slot.lost = "dropped (it no longer exists, though changecast streamed from it before)"
	}
	reset := false
	if slot.lost != "" {
		if s.cfg.OnSlotLost == SlotStop {
			return fatalf("replication slot %s was %s: the changes it held are gone, so clients may hold stale documents. "+
				"Fix: raise max_slot_wal_keep_size (and idle_replication_slot_timeout on PostgreSQL 18) so that it does not happen again, "+
				"then start with source.postgres.onSlotLost: recreate: the slot is created anew and every client reloads from a snapshot", s.cfg.Slot, slot.lost)
		}
		if slot.exists {
			if _, err := db.Exec(ctx, "SELECT pg_drop_replication_slot($1)", s.cfg.Slot); err != nil {
				return fmt.Errorf("drop the lost replication slot %s: %w", s.cfg.Slot, err)
			}
			slot.exists = false
		}
		s.cfg.Logger.Error("replication slot lost; creating it anew: every stream starts a new epoch and clients reload from a snapshot",
			"slot", s.cfg.Slot, "cause", slot.lost,
			"fix", "raise max_slot_wal_keep_size (and idle_replication_slot_timeout on PostgreSQL 18) so that a stopped or slow changecast keeps its slot; source.postgres.onSlotLost: stop stops instead")
		s.cfg.Metrics.recreated()
		reset = true
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

	messages := s.serverVersion.Load() >= 140000
	if !slot.exists {
		// The publication exists by now: a slot created before its
		// publication can report it missing.
		res, err := pglogrepl.CreateReplicationSlot(ctx, conn, s.cfg.Slot, "pgoutput",
			pglogrepl.CreateReplicationSlotOptions{SnapshotAction: "NOEXPORT_SNAPSHOT"})
		if err != nil {
			return fmt.Errorf("create replication slot %s: %w", s.cfg.Slot, err)
		}
		s.cfg.Logger.Info("created replication slot", "slot", s.cfg.Slot)
		if reset {
			// The reset travels in the new slot's stream, so it is durable:
			// it is handled before any change after it, by whichever worker
			// streams next.
			if !messages {
				cp, _ := pglogrepl.ParseLSN(res.ConsistentPoint)
				if err := s.emitReset(ctx, out, strconv.FormatUint(uint64(cp), 10)+".0"); err != nil {
					return err
				}
			} else if _, err := db.Exec(ctx, ResetSQL, s.cfg.Slot); err != nil {
				return fmt.Errorf("write the reset message for slot %s: %w", s.cfg.Slot, err)
			}
		}
	}
	args := []string{"proto_version '1'", "publication_names " + quoteLiteral(quoteIdent(s.cfg.Publication))}
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
	s.streamed = true
	s.cfg.Logger.Info("streaming", "slot", s.cfg.Slot, "publication", s.cfg.Publication, "from", s.FlushedLSN().String())

	upCtx, stopUpkeep := context.WithCancel(ctx)
	upErr := make(chan error, 1)
	go func() { upErr <- s.upkeep(upCtx, db, messages) }()
	defer func() { stopUpkeep(); <-upErr }()
	return s.stream(ctx, conn, out)
}

// slotCheckInterval is how often the WAL a slot holds back is measured.
const slotCheckInterval = 15 * time.Second

// upkeep runs beside the stream on the normal connection: heartbeats (a
// tiny non-transactional logical message every interval, so the stream
// gets an LSN to confirm even when the published tables are quiet while
// others write WAL) and the slot's WAL headroom.
func (s *Source) upkeep(ctx context.Context, db *pgx.Conn, messages bool) error {
	var hb <-chan time.Time
	if s.cfg.Heartbeat > 0 && messages {
		t := time.NewTicker(s.cfg.Heartbeat)
		defer t.Stop()
		hb = t.C
	}
	check := time.NewTicker(slotCheckInterval)
	defer check.Stop()
	var warned time.Time
	s.checkSlot(ctx, db, &warned)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hb:
			if _, err := db.Exec(ctx, "SELECT pg_logical_emit_message(false, $1, '')", heartbeatPrefix); err != nil && ctx.Err() == nil {
				s.cfg.Logger.Debug("heartbeat failed", "err", err)
			}
		case <-check.C:
			s.checkSlot(ctx, db, &warned)
		}
	}
}

// checkSlot exports the WAL the slot retains and what may still be written
// before PostgreSQL invalidates it, and warns (at most every 5 minutes)
// when that headroom falls under WALWarnFraction of max_slot_wal_keep_size.
func (s *Source) checkSlot(ctx context.Context, db *pgx.Conn, warned *time.Time) {
	if s.serverVersion.Load() < 130000 {
		return
	}
	var retained, safe, keepMB int64
	err := db.QueryRow(ctx, `SELECT coalesce(pg_current_wal_lsn() - restart_lsn, 0)::int8, coalesce(safe_wal_size, -1)::int8,
		(SELECT setting::int8 FROM pg_settings WHERE name = 'max_slot_wal_keep_size')
		FROM pg_replication_slots WHERE slot_name = $1`, s.cfg.Slot).Scan(&retained, &safe, &keepMB)
	if err != nil {
		if ctx.Err() == nil {
			s.cfg.Logger.Debug("slot check failed", "err", err)
		}
		return
	}
	s.cfg.Metrics.setWAL(float64(retained), float64(safe))
	if keepMB <= 0 || s.cfg.WALWarnFraction <= 0 || safe < 0 {
		return
	}
	if float64(safe) < s.cfg.WALWarnFraction*float64(keepMB<<20) && time.Since(*warned) >= 5*time.Minute {
		*warned = time.Now()
		s.cfg.Logger.Warn("the replication slot is close to being invalidated: it holds back more WAL than max_slot_wal_keep_size soon allows",
			"slot", s.cfg.Slot, "retained_bytes", retained, "safe_wal_bytes", safe, "max_slot_wal_keep_size_mb", keepMB,
			"fix", "find why changecast falls behind (its target down, a slow client), or raise max_slot_wal_keep_size")
	}
}

const heartbeatPrefix = "changecast.heartbeat"

// resetPrefix marks a slot created anew after the old one was lost; its
// content is the slot's name. The stream turns it into a changefeed.Reset.
const resetPrefix = "changecast.reset"

// ResetSQL writes the reset message for the slot named $1.
const ResetSQL = "SELECT pg_logical_emit_message(true, '" + resetPrefix + "', $1)"

// emitReset hands a changefeed.Reset to the pipeline directly (servers
// before PostgreSQL 14, whose streams carry no logical messages).
func (s *Source) emitReset(ctx context.Context, out chan<- changefeed.Event, version string) error {
	select {
	case out <- changefeed.Event{Change: &changefeed.Change{Op: changefeed.Reset, Version: version, CommitTime: time.Now()}}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

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
func (s *Source) setup(ctx context.Context, db *pgx.Conn) (st slotState, err error) {
	var walLevel string
	if err := db.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil {
		return slotState{}, err
	}
	var version int64
	if err := db.QueryRow(ctx, "SELECT current_setting('server_version_num')::int8").Scan(&version); err != nil {
		return slotState{}, err
	}
	s.serverVersion.Store(version)
	if walLevel != "logical" {
		return slotState{}, fatalf("PostgreSQL has wal_level=%s; logical replication needs wal_level=logical. "+
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
			return slotState{}, err
		}
		cols, err := queryStrings(ctx, db, `SELECT attname FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped`, oid)
		if err != nil {
			return slotState{}, err
		}
		pk, err := queryStrings(ctx, db, `SELECT a.attname FROM pg_index i
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
			WHERE i.indrelid = $1 AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)`, oid)
		if err != nil {
			return slotState{}, err
		}
		if ident != "f" && s.cfg.ReplicaIdentity == IdentityFull {
			// Deletes and updates then carry the whole old row: the groups
			// a row leaves are known whether or not changecast saw it.
			was := identityName(ident)
			if err := setIdentityFull(ctx, db, t); err != nil {
				var pe *pgconn.PgError
				if errors.As(err, &pe) && pe.Code == "42501" {
					problems = append(problems, fmt.Sprintf("table %s has REPLICA IDENTITY %s and the role of source.postgres.url cannot change it (%s). "+
						"Fix: run ALTER TABLE %s REPLICA IDENTITY FULL as the table's owner, or set source.postgres.replicaIdentity: keep "+
						"to accept that deletes and moves of rows changecast has not seen are sent to the whole hub", t, was, pe.Message, t))
					continue
				}
				return slotState{}, fmt.Errorf("ALTER TABLE %s REPLICA IDENTITY FULL: %w", t, err)
			}
			s.cfg.Logger.Info("set REPLICA IDENTITY FULL, so every delete and move reaches the groups that held the row", "table", t, "was", was)
			ident = "f"
		}
		s.cfg.Metrics.setIdentity(t, ident == "f")
		switch {
		case ident == "n":
			problems = append(problems, fmt.Sprintf("table %s has REPLICA IDENTITY NOTHING: its updates and deletes would fail once published; run ALTER TABLE %s REPLICA IDENTITY FULL", t, t))
		case ident == "d" && len(pk) == 0:
			problems = append(problems, fmt.Sprintf("table %s has no primary key and REPLICA IDENTITY DEFAULT: its updates and deletes would fail once published; add a primary key or run ALTER TABLE %s REPLICA IDENTITY FULL", t, t))
		case ident != "f" && !s.warnedIdentity[t]:
			if s.warnedIdentity == nil {
				s.warnedIdentity = map[string]bool{}
			}
			s.warnedIdentity[t] = true
			s.cfg.Logger.Warn("table does not have REPLICA IDENTITY FULL (source.postgres.replicaIdentity: keep): a delete or a move to another group of a row changecast has not seen is sent to the whole hub as a delete",
				"table", t, "replica_identity", identityName(ident))
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
		return slotState{}, fatalf("%s", strings.Join(problems, "; "))
	}
	s.mu.Lock()
	s.keys = keys
	s.mu.Unlock()

	if err := s.ensurePublication(ctx, db); err != nil {
		return slotState{}, err
	}
	var plugin, slotDB, thisDB, walStatus, invalidation string
	var confirmed *string
	// wal_status (PostgreSQL 13) says 'lost' once the slot fell more than
	// max_slot_wal_keep_size behind; invalidation_reason (17) says why.
	cols := "''::text, NULL::text"
	if version >= 170000 {
		cols = "coalesce(wal_status, ''), invalidation_reason"
	} else if version >= 130000 {
		cols = "coalesce(wal_status, ''), NULL::text"
	}
	var reason *string
	err = db.QueryRow(ctx, `SELECT plugin, coalesce(database, ''), current_database(), confirmed_flush_lsn::text, `+cols+`
		FROM pg_replication_slots WHERE slot_name = $1`, s.cfg.Slot).Scan(&plugin, &slotDB, &thisDB, &confirmed, &walStatus, &reason)
	if errors.Is(err, pgx.ErrNoRows) {
		return slotState{}, nil
	}
	if err != nil {
		return slotState{}, err
	}
	if reason != nil {
		invalidation = *reason
	}
	if slotDB != thisDB {
		// Slot names are global to the server; a logical slot belongs to one
		// database.
		return slotState{}, fatalf("replication slot %s belongs to database %q, not %q; choose another source.postgres.slot", s.cfg.Slot, slotDB, thisDB)
	}
	if plugin != "pgoutput" {
		return slotState{}, fatalf("replication slot %s uses plugin %s, not pgoutput; drop it or choose another source.postgres.slot", s.cfg.Slot, plugin)
	}
	st.exists = true
	switch {
	case invalidation != "":
		st.lost = "invalidated (" + invalidation + ")"
	case walStatus == "lost":
		st.lost = "invalidated (wal_status lost: it fell more than max_slot_wal_keep_size behind)"
	}
	if confirmed != nil && st.lost == "" {
		if lsn, err := pglogrepl.ParseLSN(*confirmed); err == nil {
			_ = s.Checkpoint(ctx, changefeed.Position(lsn.String()))
		}
	}
	return st, nil
}

// slotState is what setup found of the slot.
type slotState struct {
	exists bool
	lost   string // why the slot can no longer stream, when it cannot
}

func identityName(ident string) string {
	switch ident {
	case "d":
		return "DEFAULT"
	case "n":
		return "NOTHING"
	case "i":
		return "USING INDEX"
	}
	return "FULL"
}

// setIdentityFull alters the table, waiting at most a few seconds for its
// lock: ALTER TABLE queues behind long transactions on the table and, while
// queued, blocks every other query on it.
func setIdentityFull(ctx context.Context, db *pgx.Conn, table string) error {
	sch, name, _ := splitTable(table)
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '5s'"); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "ALTER TABLE "+pgx.Identifier{sch, name}.Sanitize()+" REPLICA IDENTITY FULL"); err != nil {
		return err
	}
	return tx.Commit(ctx)
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
		if m.Transactional && m.Prefix == resetPrefix && string(m.Content) == d.src.cfg.Slot {
			return d.one(&changefeed.Change{Op: changefeed.Reset, Version: d.version(), CommitTime: d.commitTime}), nil
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
		Version: d.version(), CommitTime: d.commitTime, Err: after.err,
		// Without REPLICA IDENTITY FULL (replicaIdentity: keep) the old
		// values are not in the stream: where the row was is unknown unless
		// the mapper's shadow knows.
		PrevUnknown: op != changefeed.Insert && !r.identFull}
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
