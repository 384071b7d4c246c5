package postgres

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/schema/wire"
)

// Snapshots read beside the stream, exact to the version they are stamped
// with. A plain SELECT with pg_current_wal_lsn() is not exact: a
// transaction whose commit record is already in the WAL can still be
// invisible to the SELECT's snapshot. So, as in Netflix's DBLog and
// Debezium's incremental snapshots, a page is selected between watermarks
// that the stream reader sees, here sharpened with transaction ids:
//
//  1. open a window: from now on the stream reader reports to it every
//     transaction it decodes (and it keeps the last few hundred decoded
//     before, for a commit whose visibility lags its commit record);
//  2. select the page in a REPEATABLE READ transaction and take its
//     snapshot (pg_current_snapshot: xmin, xmax, in-progress ids);
//  3. write a high watermark (pg_logical_emit_message, transactional) and
//     wait for the stream reader to decode it;
//  4. every key changed by a transaction the SELECT could not see and that
//     committed before the watermark is dropped from the page (its row is
//     stale) and read again in a next round; the rest are exact at the
//     watermark: every change before it is visible to the SELECT or
//     dropped, and none after it is.
//
// Versions are stamped "watermarkCommitLSN.0": above every change of an
// earlier transaction, below every change of a later one.

// Snapshot waits and rounds are bounded.
const (
	snapshotWait   = 30 * time.Second // for the stream to decode the watermark
	snapshotRounds = 20               // re-reads of keys that keep changing
	ringSize       = 256              // transactions kept for late visibility
)

const (
	watermarkPrefix  = "changecast.snapshot"
	resnapshotPrefix = "changecast.resnapshot" // content: the slot, or empty for every slot
)

// docKey names one document of one collection.
type docKey struct{ coll, id string }

// txnRecord is what a window needs of one decoded transaction.
type txnRecord struct {
	xid    uint32
	keys   []docKey
	truncs []string // collections truncated
	// wide: collections with more changed keys than a record keeps
	// (maxTxnKeys); to a window they are as good as truncated (every row
	// of its round is read again), which bounds the memory a bulk load
	// costs here.
	wide []string
}

// maxTxnKeys bounds the keys kept of one transaction.
const maxTxnKeys = 4096

// add records that the transaction changed k.
func (r *txnRecord) add(k docKey) {
	if len(r.keys) < maxTxnKeys {
		r.keys = append(r.keys, k)
		return
	}
	if !slices.Contains(r.wide, k.coll) {
		r.wide = append(r.wide, k.coll)
	}
}

// reset starts the record of transaction xid, reusing its buffers (at
// most maxTxnKeys keys).
func (r *txnRecord) reset(xid uint32) {
	r.xid, r.keys, r.truncs, r.wide = xid, r.keys[:0], r.truncs[:0], r.wide[:0]
}

// xidSnapshot is a pg_current_snapshot(): transactions below xmin are
// finished, at or above xmax not yet started, those in xip in progress.
// Compared on 32 bits, as pgoutput sends transaction ids.
type xidSnapshot struct {
	xmin, xmax uint32
	xip        map[uint32]bool
}

// parseXidSnapshot reads "xmin:xmax:xip,xip,…" (xid8 values).
func parseXidSnapshot(s string) (*xidSnapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return nil, fmt.Errorf("snapshot %q: want xmin:xmax:xip", s)
	}
	parse := func(x string) (uint32, error) {
		n, err := strconv.ParseUint(x, 10, 64)
		return uint32(n), err
	}
	var err error
	sn := &xidSnapshot{xip: map[uint32]bool{}}
	if sn.xmin, err = parse(parts[0]); err != nil {
		return nil, fmt.Errorf("snapshot %q: %w", s, err)
	}
	if sn.xmax, err = parse(parts[1]); err != nil {
		return nil, fmt.Errorf("snapshot %q: %w", s, err)
	}
	if parts[2] != "" {
		for _, x := range strings.Split(parts[2], ",") {
			n, err := parse(x)
			if err != nil {
				return nil, fmt.Errorf("snapshot %q: %w", s, err)
			}
			sn.xip[n] = true
		}
	}
	return sn, nil
}

// precedes is TransactionIdPrecedes for normal ids: modulo 2^32.
func precedes(a, b uint32) bool { return int32(a-b) < 0 }

// visible reports whether a committed transaction xid is visible to the
// snapshot.
func (sn *xidSnapshot) visible(xid uint32) bool {
	return precedes(xid, sn.xmax) && !sn.xip[xid]
}

// window collects, for one snapshot round, the keys of one collection
// changed by transactions the round's SELECT could not see.
type window struct {
	id    uint64
	coll  string
	snap  *xidSnapshot // nil until the SELECT has run
	early []txnRecord  // decoded before snap was known
	stale map[string]bool
	all   bool   // a truncate: every row of the round is stale
	hw    string // the watermark's version, once decoded
	done  chan struct{}
	// inject: a resnapshot's round, whose rows the stream reader publishes
	// at the watermark (all but the stale ones).
	inject bool
	rows   []snapRow
}

func (w *window) note(r *txnRecord) {
	if w.snap.visible(r.xid) {
		return
	}
	for _, k := range r.keys {
		if k.coll == w.coll {
			w.stale[k.id] = true
		}
	}
	if slices.Contains(r.truncs, w.coll) || slices.Contains(r.wide, w.coll) {
		w.all = true
	}
}

// windows is the registry the stream reader reports decoded transactions
// to. It lives on the Slot, so windows survive a reconnect of the stream
// (whose replays only add keys: conservative).
type windows struct {
	mu   sync.Mutex
	seq  uint64
	open map[uint64]*window
	ring [ringSize]txnRecord
	next int
}

func (ws *windows) register(coll string, inject bool) *window {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.seq++
	w := &window{id: ws.seq, coll: coll, stale: map[string]bool{}, done: make(chan struct{}), inject: inject}
	if ws.open == nil {
		ws.open = map[uint64]*window{}
	}
	ws.open[w.id] = w
	return w
}

func (ws *windows) unregister(w *window) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	delete(ws.open, w.id)
}

// setSnapshot gives w the SELECT's snapshot (and rows, for a resnapshot)
// and judges what was decoded before: the ring (transactions decoded
// shortly before w opened, whose visibility may lag their commit record)
// and what came since.
func (ws *windows) setSnapshot(w *window, sn *xidSnapshot, rows []snapRow) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	w.snap = sn
	if w.inject {
		w.rows = rows
	}
	for i := range ws.ring {
		if r := &ws.ring[i]; r.xid != 0 {
			w.note(r)
		}
	}
	for i := range w.early {
		w.note(&w.early[i])
	}
	w.early = nil
}

// commit is called by the stream reader for every decoded transaction, with
// the ids of the watermarks it carried.
func (ws *windows) commit(r *txnRecord, commitLSN pglogrepl.LSN, marks []uint64) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	slot := &ws.ring[ws.next]
	ws.next = (ws.next + 1) % ringSize
	slot.xid = r.xid
	slot.keys = append(slot.keys[:0], r.keys...)
	slot.truncs = append(slot.truncs[:0], r.truncs...)
	slot.wide = append(slot.wide[:0], r.wide...)
	for _, w := range ws.open {
		if w.hw != "" {
			continue
		}
		if w.snap == nil {
			w.early = append(w.early, txnRecord{xid: r.xid, keys: append([]docKey(nil), r.keys...),
				truncs: append([]string(nil), r.truncs...), wide: append([]string(nil), r.wide...)})
		} else {
			w.note(r)
		}
	}
	for _, id := range marks {
		if w := ws.open[id]; w != nil && w.hw == "" {
			w.hw = strconv.FormatUint(uint64(commitLSN), 10) + ".0"
			close(w.done)
		}
	}
}

// inject returns, when window id is a resnapshot's, the changes that
// republish its rows that are not stale, with versions from next (the
// watermark transaction's).
func (ws *windows) inject(id uint64, d *decoder) []changefeed.Event {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	w := ws.open[id]
	if w == nil || !w.inject || w.all {
		return nil
	}
	var evs []changefeed.Event
	for _, r := range w.rows {
		if w.stale[r.id] {
			continue
		}
		evs = append(evs, changefeed.Event{Change: &changefeed.Change{Collection: w.coll, ID: r.id, Op: changefeed.Update,
			After: r.doc, Version: d.version(), CommitTime: d.commitTime, Refresh: true}})
	}
	w.rows = nil
	return evs
}

// Snapshot reads a page of the collection's current documents beside the
// stream of this slot; it implements changefeed.Snapshotter. It needs this
// instance to stream the slot now (changefeed.ErrNotStreaming otherwise)
// and PostgreSQL 14 or later (logical messages).
func (s *Slot) Snapshot(ctx context.Context, q changefeed.SnapshotQuery) (*changefeed.SnapshotPage, error) {
	src := s.current.Load()
	if src == nil || !src.Ready() {
		return nil, changefeed.ErrNotStreaming
	}
	if v := src.serverVersion.Load(); v < 140000 {
		// The watermark is a logical message, which pgoutput sends from
		// PostgreSQL 14 on.
		return nil, fmt.Errorf("postgres snapshot: PostgreSQL %d.%d cannot serve snapshots (logical messages need 14 or later): %w", v/10000, v%10000, changefeed.ErrUnsupported)
	}
	pool, err := s.snapshotPool(ctx)
	if err != nil {
		return nil, err
	}
	return src.snapshot(ctx, pool, &s.wins, q, false)
}

// snapshotPool opens the connections snapshots read on, once; Close
// closes them.
func (s *Slot) snapshotPool(ctx context.Context) (*pgxpool.Pool, error) {
	s.poolMu.Lock()
	defer s.poolMu.Unlock()
	if s.pool != nil {
		return s.pool, nil
	}
	cfg, err := pgxpool.ParseConfig(s.Config.URL)
	if err != nil {
		return nil, err
	}
	snapshotSession(cfg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s.pool = pool
	return pool, nil
}

// snapshotSession sets up snapshot connections: the stream's session
// settings, so values read have the text the stream decodes, and the
// simple protocol, so every column arrives as that text.
func snapshotSession(cfg *pgxpool.Config) {
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	cfg.ConnConfig.RuntimeParams["datestyle"] = "ISO"
	cfg.ConnConfig.RuntimeParams["application_name"] = "changecast-snapshot"
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	cfg.MaxConns = 4
}

// Close releases the snapshot connections.
func (s *Slot) Close() {
	s.poolMu.Lock()
	defer s.poolMu.Unlock()
	if s.pool != nil {
		s.pool.Close()
		s.pool = nil
	}
}

// snapshotCursor is SnapshotPage.Next: the key of the page's last row, as
// its columns' text.
type snapshotCursor struct {
	Key []string `json:"k"`
}

// snapshot reads a page (see Slot.Snapshot); inject republishes its rows
// through the stream instead (a resnapshot).
func (s *Source) snapshot(ctx context.Context, pool *pgxpool.Pool, ws *windows, q changefeed.SnapshotQuery, inject bool) (*changefeed.SnapshotPage, error) {
	table, ok := s.tableOf(q.Collection)
	if !ok {
		return nil, fmt.Errorf("postgres snapshot: %s is not a streamed table", q.Collection)
	}
	if q.Limit <= 0 {
		q.Limit = 1000
	}
	sel, err := s.selectFor(ctx, pool, table, q)
	if err != nil {
		return callerRefused(q, err)
	}
	ctx, cancel := context.WithTimeout(ctx, snapshotWait)
	defer cancel()

	// Round 1 reads the page; later rounds read the same key range again
	// for the rows that were stale, until none is. A stale row the page
	// returned before and a later round does not is gone from the page by
	// then: it is reported deleted at that round's version, so the window's
	// changes of it (older) are ignored, not taken for a gap.
	var (
		page     = &changefeed.SnapshotPage{}
		pending  map[string]bool // ids still to settle
		returned = map[string]bool{}
		found    = map[string]changefeed.SnapshotDoc{}
		order    []string
		lastKey  []string
		lastHW   string
	)
	for round := 0; ; round++ {
		if round == snapshotRounds {
			return nil, fmt.Errorf("postgres snapshot: %d rows of %s kept changing over %d rounds; retry", len(pending), table, round)
		}
		rows, hw, stale, all, err := s.snapshotRound(ctx, pool, ws, sel, round > 0, inject)
		if err != nil {
			return callerRefused(q, err)
		}
		lastHW = hw
		if round == 0 && len(rows) == q.Limit {
			lastKey = rows[len(rows)-1].key
			c, _ := json.Marshal(snapshotCursor{Key: lastKey})
			page.Next = base64.RawURLEncoding.EncodeToString(c)
		}
		next := map[string]bool{}
		seen := map[string]bool{}
		for _, r := range rows {
			if round > 0 && !pending[r.id] {
				continue // settled in an earlier round
			}
			seen[r.id] = true
			if !returned[r.id] {
				returned[r.id] = true
				order = append(order, r.id)
			}
			if all || stale[r.id] {
				next[r.id] = true
				continue
			}
			found[r.id] = changefeed.SnapshotDoc{ID: r.id, Version: hw, Doc: r.doc}
		}
		for id := range pending {
			if !seen[id] && !next[id] && returned[id] && !stale[id] && !all {
				found[id] = changefeed.SnapshotDoc{ID: id, Version: hw, Deleted: true}
			}
		}
		// A stale key the SELECT did not return may be a row an unseen
		// transaction inserted, or moved into the page: look again.
		for id := range stale {
			if _, ok := found[id]; !ok && !seen[id] && (round == 0 || pending[id]) {
				next[id] = true
			}
		}
		if round > 0 && all {
			for id := range pending {
				next[id] = true
			}
		}
		if len(next) == 0 {
			break
		}
		pending = next
		// Later rounds read the same range again: up to the page's last
		// key (or to the end, on the last page).
		sel.upTo = lastKey
	}
	for _, id := range order {
		if d, ok := found[id]; ok {
			page.Docs = append(page.Docs, d)
		}
	}
	// Answer once the pipeline has published every change up to the last
	// watermark: a client applying what it received meanwhile then has the
	// older changes of the page's documents (deletes among them) in hand,
	// and does not take an obsolete patch for a gap.
	if err := s.waitPublished(ctx, lastHW); err != nil {
		return nil, err
	}
	return page, nil
}

// callerRefused turns a refusal of the caller's values into its answer:
// an id that is no key of the table names no document (an empty page); a
// cursor that is not a key is not one of ours. Other errors pass.
func callerRefused(q changefeed.SnapshotQuery, err error) (*changefeed.SnapshotPage, error) {
	if !errors.Is(err, errNoSuchKey) && !errors.Is(err, errCallerValue) {
		return nil, err
	}
	if q.ID != "" {
		return &changefeed.SnapshotPage{}, nil
	}
	return nil, &BadCursorError{}
}

// waitPublished waits until every change up to version hw
// ("commitLSN.index") was published (the checkpoint watermark passed it).
func (s *Source) waitPublished(ctx context.Context, hw string) error {
	lsnText, _, _ := strings.Cut(hw, ".")
	lsn, err := strconv.ParseUint(lsnText, 10, 64)
	if err != nil || hw == "" {
		return nil
	}
	for s.flushed.Load() < lsn {
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres snapshot: the stream did not publish up to the snapshot within %v: %w", snapshotWait, changefeed.ErrNotStreaming)
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

// snapRow is one selected row.
type snapRow struct {
	id  string
	key []string // key columns' text, for the cursor
	doc map[string]any
}

// snapshotRound runs steps 1–4 once: the rows, the watermark's version,
// and which ids are stale (all: a truncate).
func (s *Source) snapshotRound(ctx context.Context, pool *pgxpool.Pool, ws *windows, sel *snapSelect, again, inject bool) ([]snapRow, string, map[string]bool, bool, error) {
	w := ws.register(sel.table, inject)
	defer ws.unregister(w)
	rows, snap, err := s.selectRows(ctx, pool, sel, again)
	if err != nil {
		return nil, "", nil, false, err
	}
	ws.setSnapshot(w, snap, rows)
	if err := emitWatermark(ctx, pool, w.id); err != nil {
		return nil, "", nil, false, fmt.Errorf("postgres snapshot: write the watermark: %w", err)
	}
	select {
	case <-w.done:
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, "", nil, false, fmt.Errorf("postgres snapshot: the stream did not reach the watermark within %v (is it far behind, or stopped?): %w", snapshotWait, changefeed.ErrNotStreaming)
		}
		return nil, "", nil, false, ctx.Err()
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return rows, w.hw, w.stale, w.all, nil
}

// emitWatermark writes the high watermark of window id, flushed at commit
// (synchronous_commit on for this transaction): the walsender sends only
// flushed WAL, and with synchronous_commit off the WAL writer would make
// every snapshot wait for its next round.
func emitWatermark(ctx context.Context, pool *pgxpool.Pool, id uint64) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit TO on"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "SELECT pg_logical_emit_message(true, $1, $2)", watermarkPrefix, strconv.FormatUint(id, 10))
		return err
	})
}

// snapSelect is the SELECT of a page.
type snapSelect struct {
	table   string   // schema.table
	sql     string   // SELECT cols FROM t WHERE pred
	args    []any    // of pred
	keyCols []string // quoted
	keys    []string // key column names
	from    []string // the cursor's key: rows after it
	// callerKey: the SELECT compares the key with values from the caller
	// (an id, a cursor), which may not parse as the key's types.
	callerKey bool
	upTo      []string // rows up to it (later rounds)
	limit     int
}

// selectFor builds the page's SELECT: the published columns (the
// publication's column list, if any), its row filter, the match, the id,
// the cursor.
func (s *Source) selectFor(ctx context.Context, pool *pgxpool.Pool, table string, q changefeed.SnapshotQuery) (*snapSelect, error) {
	sch, name, _ := splitTable(table)
	keys := s.keyColumns(table)
	if len(keys) == 0 {
		return nil, fmt.Errorf("postgres snapshot: %s has no key columns yet (the stream has not set up)", table)
	}
	var cols []string
	var rowFilter *string
	var err error
	if s.serverVersion.Load() >= 150000 {
		// Column lists and row filters (attnames, rowfilter) exist from
		// PostgreSQL 15.
		err = pool.QueryRow(ctx, `SELECT coalesce(attnames, '{}'), rowfilter FROM pg_publication_tables
			WHERE pubname = $1 AND schemaname = $2 AND tablename = $3`, s.cfg.Publication, sch, name).Scan(&cols, &rowFilter)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("postgres snapshot: publication of %s: %w", table, err)
		}
	}
	if len(cols) == 0 {
		// Before PostgreSQL 15 there are no column lists: every column
		// but generated ones (pgoutput leaves those out).
		cols, err = queryPoolStrings(ctx, pool, `SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass
			AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum`, quoteIdent(sch)+"."+quoteIdent(name))
		if err != nil {
			return nil, fmt.Errorf("postgres snapshot: columns of %s: %w", table, err)
		}
	}
	sel := &snapSelect{table: table, keys: keys, limit: q.Limit}
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = quoteIdent(c)
	}
	var where []string
	if rowFilter != nil && *rowFilter != "" {
		where = append(where, "("+*rowFilter+")")
	}
	for _, m := range q.Match {
		if len(m.Field) == 0 {
			return nil, fmt.Errorf("postgres snapshot: empty field")
		}
		sel.args = append(sel.args, m.Value)
		n := "$" + strconv.Itoa(len(sel.args))
		if len(m.Field) == 1 {
			where = append(where, quoteIdent(m.Field[0])+"::text = "+n)
			continue
		}
		path := make([]string, len(m.Field)-1)
		for i, p := range m.Field[1:] {
			path[i] = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(p) + `"`
		}
		sel.args = append(sel.args, "{"+strings.Join(path, ",")+"}")
		where = append(where, quoteIdent(m.Field[0])+" #>> $"+strconv.Itoa(len(sel.args))+"::text[] = "+n)
	}
	if q.ID != "" {
		vals, ok := keyValues(q.ID, len(keys))
		if !ok {
			return nil, errNoSuchKey
		}
		// The key columns against untyped literals (the simple protocol
		// sends each argument as one): PostgreSQL reads each as the
		// column's own type, so the key's index finds the row. A cast of
		// the column (::text) would read every row of the table.
		for i, k := range keys {
			sel.args = append(sel.args, vals[i])
			where = append(where, quoteIdent(k)+" = $"+strconv.Itoa(len(sel.args)))
		}
		sel.callerKey = true
	}
	for _, k := range keys {
		sel.keyCols = append(sel.keyCols, quoteIdent(k))
	}
	if q.After != "" {
		key, ok := decodeSnapshotCursor(q.After, len(keys))
		if !ok {
			return nil, &BadCursorError{}
		}
		sel.from = key
		sel.callerKey = true
	}
	sql := "SELECT " + strings.Join(quoted, ", ") + " FROM " + quoteIdent(sch) + "." + quoteIdent(name)
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sel.sql = sql
	return sel, nil
}

// BadCursorError is a cursor this source did not make.
type BadCursorError struct{}

func (*BadCursorError) Error() string { return "postgres snapshot: the cursor is not valid" }

// BadCursor marks the error as the caller's.
func (*BadCursorError) BadCursor() bool { return true }

// errNoSuchKey: the id asked for is no key of the table (it does not have
// the key's form, or does not parse as the key's types); no row has it.
var errNoSuchKey = errors.New("postgres snapshot: not a key of the table")

// errCallerValue: PostgreSQL refused the caller's id or cursor as the
// key's types.
var errCallerValue = errors.New("postgres snapshot: a value from the caller is not of the key's types")

// keyValues splits a document id into the text of each of n key columns:
// the id itself for one column, the elements of its JSON array (as
// wire.FormatID writes it) for several. Numbers keep their exact text.
func keyValues(id string, n int) ([]string, bool) {
	if n == 1 {
		return []string{id}, literalOK(id)
	}
	dec := json.NewDecoder(strings.NewReader(id))
	dec.UseNumber()
	var arr []any
	if err := dec.Decode(&arr); err != nil || len(arr) != n || dec.More() {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false // something after the array
	}
	vals := make([]string, n)
	for i, v := range arr {
		switch v := v.(type) {
		case string:
			vals[i] = v
		case json.Number:
			vals[i] = v.String()
		case bool:
			vals[i] = strconv.FormatBool(v)
		default:
			return nil, false // null, an object, an array: no key's text
		}
		if !literalOK(vals[i]) {
			return nil, false
		}
	}
	return vals, true
}

// decodeSnapshotCursor reads a snapshotCursor of n key columns.
func decodeSnapshotCursor(s string, n int) ([]string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, false
	}
	var c snapshotCursor
	if err := json.Unmarshal(b, &c); err != nil || len(c.Key) != n {
		return nil, false
	}
	for _, k := range c.Key {
		if !literalOK(k) {
			return nil, false
		}
	}
	return c.Key, true
}

// literalOK reports whether s can be a PostgreSQL text literal: valid
// UTF-8 (the server's encoding refuses the whole statement otherwise) with
// no NUL (which would end the statement's text).
func literalOK(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// callerValueError tells whether err is PostgreSQL refusing a value of the
// statement as its type (SQLSTATE class 22, data exception: "abc" for an
// integer, an out-of-range number, a malformed date…).
func callerValueError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && strings.HasPrefix(pe.Code, "22")
}

// selectRows runs the page's SELECT in a REPEATABLE READ transaction and
// returns its rows, decoded as the stream decodes them, and its snapshot.
// again reads the page's range once more, without its limit.
func (s *Source) selectRows(ctx context.Context, pool *pgxpool.Pool, sel *snapSelect, again bool) ([]snapRow, *xidSnapshot, error) {
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var snapText string
	if err := tx.QueryRow(ctx, "SELECT pg_current_snapshot()::text").Scan(&snapText); err != nil {
		return nil, nil, fmt.Errorf("postgres snapshot: %w", err)
	}
	snap, err := parseXidSnapshot(snapText)
	if err != nil {
		return nil, nil, err
	}
	sql, args := sel.query(again)
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, nil, sel.queryError(err)
	}
	defer rows.Close()
	fds := rows.FieldDescriptions()
	keyIdx := make([]int, len(sel.keys))
	for i, k := range sel.keys {
		keyIdx[i] = -1
		for j, fd := range fds {
			if fd.Name == k {
				keyIdx[i] = j
			}
		}
		if keyIdx[i] < 0 {
			return nil, nil, fmt.Errorf("postgres snapshot: key column %s of %s is not published", k, sel.table)
		}
	}
	var out []snapRow
	for rows.Next() {
		raw := rows.RawValues()
		doc := make(map[string]any, len(fds))
		key := make([]string, len(keyIdx))
		for j, fd := range fds {
			if raw[j] == nil {
				doc[fd.Name] = nil
				continue
			}
			v, known, err := decodeValue(s.tm, fd.DataTypeOID, raw[j])
			if err != nil {
				return nil, nil, fmt.Errorf("postgres snapshot of %s: column %s: %w", sel.table, fd.Name, err)
			}
			if !known {
				s.warnUnknown(sel.table, fd.Name, fd.DataTypeOID)
			}
			doc[fd.Name] = v
		}
		vals := make([]any, len(keyIdx))
		for i, j := range keyIdx {
			key[i] = string(raw[j])
			vals[i] = doc[fds[j].Name]
		}
		id, err := wire.FormatID(vals...)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, snapRow{id: id, key: key, doc: doc})
	}
	if err := rows.Err(); err != nil {
		return nil, nil, sel.queryError(err)
	}
	return out, snap, nil
}

// query is the page's SELECT and its arguments: rows after the cursor's
// key, up to the page's last key when again (a later round, without the
// limit), in key order.
func (sel *snapSelect) query(again bool) (string, []any) {
	args := append([]any(nil), sel.args...)
	sql := sel.sql
	cond := func(op string, key []string) {
		ph := make([]string, len(key))
		for i, k := range key {
			args = append(args, k)
			ph[i] = "$" + strconv.Itoa(len(args))
		}
		c := "(" + strings.Join(sel.keyCols, ", ") + ") " + op + " (" + strings.Join(ph, ", ") + ")"
		if strings.Contains(sql, " WHERE ") {
			sql += " AND " + c
		} else {
			sql += " WHERE " + c
		}
	}
	if sel.from != nil {
		cond(">", sel.from)
	}
	if again && sel.upTo != nil {
		cond("<=", sel.upTo)
	}
	sql += " ORDER BY " + strings.Join(sel.keyCols, ", ")
	if !again && sel.limit > 0 {
		sql += " LIMIT " + strconv.Itoa(sel.limit)
	}
	return sql, args
}

// queryError names the SELECT's failure. The caller's values (an id, a
// cursor) are read as the key's types when the statement is parsed, before
// any row: a data exception then is the caller's, not the source's.
func (sel *snapSelect) queryError(err error) error {
	if sel.callerKey && callerValueError(err) {
		return errCallerValue
	}
	return fmt.Errorf("postgres snapshot of %s: %w", sel.table, err)
}

func queryPoolStrings(ctx context.Context, pool *pgxpool.Pool, q string, args ...any) ([]string, error) {
	rows, err := pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// tableOf finds the streamed table of a collection name.
func (s *Source) tableOf(coll string) (string, bool) {
	for _, t := range s.cfg.Tables {
		if t == coll {
			return t, true
		}
	}
	return "", false
}
