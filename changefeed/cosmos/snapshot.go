package cosmos

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/lease"
	"github.com/changecast/changecast/schema/template"
	"github.com/changecast/changecast/schema/wire"
)

// Snapshots read the change feed, not a query: _lsn, the version the stream
// gives every change, exists only in change feed responses (a query or a
// point read does not return it). A feed range's latest-version change feed
// read from the beginning yields every current document once, at its _lsn,
// and no deleted one. So a snapshot reads, from the beginning, the change
// feed of the one logical partition that can hold the group's documents
// (when the match is on the container's partition key path), or else of
// every feed range, and keeps the documents whose fields have the match's
// text, decoded exactly as the stream decodes them.
//
// That alone is not exact. The latest-version feed keeps only a document's
// last version, so a stream that read a document at v1 and reads it next
// at v3 never sees v2, and sends v3 as a patch from v1. A client that a
// snapshot gave v2 would apply that patch onto v2, which it was not computed
// from. A snapshot therefore answers each document at a version the stream
// reads:
//
//   - A version at or below the stream's published position (its lease's
//     checkpoint) when the snapshot began is one the stream read: the
//     stream's read that covered it came before the snapshot's, and the
//     document held that version from before the one read to after the
//     other.
//   - A newer version is pending. Once the stream has published past where
//     the snapshot read, the snapshot reads on from there: a pending
//     document that does not show up did not change since, so the stream
//     read it at that version too; one that changed takes its new version,
//     checked the same way, for at most snapshotRounds rounds.
//
// And every page is answered only once the streams have published every
// change up to where it read, so a client that connected before asking
// already holds (or is sent) the older changes of documents the page does
// not list (moved to another group, soft-deleted): it settles them instead
// of taking them for gaps. The streams' positions come from the lease store
// (Container.Leases), so any instance sharing it can answer.

// Snapshot bounds.
const (
	snapshotWait   = 30 * time.Second // for the streams to publish up to a page
	snapshotRounds = 20               // re-reads of documents that keep changing
	snapshotItems  = 1000             // items per change feed read
	snapshotLimit  = 1000             // documents per page when the query gives none
	// idLookback is how far before a document's _ts the one-document form
	// starts reading its change feed (If-Modified-Since is documented to be
	// precise to about 5 s); a read that misses it reads from the beginning.
	idLookback = time.Minute
)

// Snapshot reads a page of the container's documents at versions the
// stream publishes; it implements changefeed.Snapshotter. It needs
// Container.Leases, and the streams of the ranges it reads to be running
// (on this instance or another sharing the lease store): it answers
// changefeed.ErrNotStreaming when they do not publish up to what it read
// within 30 s.
//
// Cost: a group snapshot reads the whole logical partition when the match
// is on the partition key path (version 2 hash, one path), else the whole
// container's change feed, and filters in Go. The one-document form runs a
// cross-partition query for the id, then reads the document's logical
// partition (or every range) from a minute before its _ts.
func (c *Container) Snapshot(ctx context.Context, q changefeed.SnapshotQuery) (*changefeed.SnapshotPage, error) {
	c.mu.Lock()
	f, prefix := c.feed, c.prefix
	c.mu.Unlock()
	if c.Leases == nil {
		return nil, fmt.Errorf("cosmos snapshot: no lease store to read the streams' positions from: %w", changefeed.ErrUnsupported)
	}
	if f == nil {
		return nil, changefeed.ErrNotStreaming
	}
	if q.Collection != c.Container {
		return nil, fmt.Errorf("cosmos snapshot: %q is not the streamed container %q", q.Collection, c.Container)
	}
	w := &waiter{store: c.Leases, prefix: prefix + lease.Separator}
	if q.ID != "" {
		return f.snapshotOne(ctx, w, q)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = snapshotLimit
	}
	sc := newScopes(f, q.Match)
	cur := snapCursor{RID: f.rid}
	if q.After != "" {
		var err error
		if cur, err = decodeCursor(q.After, f.rid, len(sc.pks)); err != nil {
			return nil, err
		}
	}
	ls, err := w.leases(ctx)
	if err != nil {
		return nil, err
	}
	r := newRun(f, ls, limit, matcher(q.Match, ""))
	done, err := r.page(ctx, sc, &cur)
	if err != nil {
		return nil, err
	}
	if err := r.settle(ctx, w); err != nil {
		return nil, err
	}
	page := r.result()
	if !done {
		page.Next = cur.encode()
	}
	return page, nil
}

// scopes is what a snapshot reads: logical partitions (one per typed value
// the match's text can stand for), or every feed range.
type scopes struct {
	pks  []azcosmos.PartitionKey
	epks []string // their effective partition keys
}

// newScopes reads the logical partitions of match when it is on the
// partition key path of a single-path, version 2 container.
func newScopes(f *Feed, match []changefeed.FieldMatch) scopes {
	path, ok := f.pkPath()
	if !ok {
		return scopes{}
	}
	for _, m := range match {
		if !slices.Equal(m.Field, path) {
			continue
		}
		var sc scopes
		for _, v := range pkValues(m.Value) {
			epk, err := effectivePartitionKey(v)
			if err != nil {
				continue
			}
			sc.pks = append(sc.pks, partitionKeyOf(v))
			sc.epks = append(sc.epks, epk)
		}
		return sc
	}
	return scopes{}
}

// pkPath is the partition key path when logical partitions can be found
// here: one path, hash version 2. (Version 1 hashes, used by containers
// created without a version, are not implemented.)
func (f *Feed) pkPath() (template.Pointer, bool) {
	d := f.pk
	if len(d.Paths) != 1 || d.Version != 2 || (d.Kind != "" && d.Kind != azcosmos.PartitionKeyKindHash) {
		return nil, false
	}
	p, err := template.ParsePointer(d.Paths[0])
	if err != nil || len(p) == 0 {
		return nil, false
	}
	return p, true
}

// pkValues lists the partition key values whose text (wire.ScalarString)
// can be text: the string itself, and the number or boolean it spells.
func pkValues(text string) []any {
	out := []any{text}
	if text != "" && strings.ContainsRune("-0123456789", rune(text[0])) && json.Valid([]byte(text)) {
		if n, err := strconv.ParseFloat(text, 64); err == nil {
			out = append(out, n)
		}
	}
	if b, err := strconv.ParseBool(text); err == nil && (text == "true" || text == "false") {
		out = append(out, b)
	}
	return out
}

func partitionKeyOf(v any) azcosmos.PartitionKey {
	switch x := v.(type) {
	case string:
		return azcosmos.NewPartitionKeyString(x)
	case float64:
		return azcosmos.NewPartitionKeyNumber(x)
	case bool:
		return azcosmos.NewPartitionKeyBool(x)
	}
	return azcosmos.NullPartitionKey
}

// matcher keeps the documents whose fields have the match's texts (and,
// when id is set, that id).
func matcher(match []changefeed.FieldMatch, id string) func(id string, doc map[string]any) bool {
	return func(docID string, doc map[string]any) bool {
		if id != "" && docID != id {
			return false
		}
		for _, m := range match {
			v, ok := m.Field.Get(doc)
			if !ok {
				return false
			}
			s, ok := wire.ScalarString(v)
			if !ok || s != m.Value {
				return false
			}
		}
		return true
	}
}

// snapCursor is SnapshotPage.Next: where the snapshot reads on.
type snapCursor struct {
	RID string `json:"r"`
	// K is the logical partition being read (partition key scopes).
	K int `json:"k,omitempty"`
	// E are the feed ranges of the current range or partition still to
	// read, each with its position (a split turns one into several).
	E []tokenRange `json:"e,omitempty"`
	// N is where the next feed range starts (feed range scopes); "FF"
	// once every range is read.
	N string `json:"n,omitempty"`
	// S is set once the first entry was taken (partition key scopes).
	S bool `json:"s,omitempty"`
}

func (c snapCursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s, rid string, partitions int) (snapCursor, error) {
	var c snapCursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.RID != rid || c.K < 0 || c.K >= max(partitions, 1) {
		return c, &BadCursorError{}
	}
	return c, nil
}

// BadCursorError is a cursor this source did not make (or made for a
// container since dropped and re-created).
type BadCursorError struct{}

func (*BadCursorError) Error() string { return "cosmos snapshot: the cursor is not valid" }

// BadCursor marks the error as the caller's.
func (*BadCursorError) BadCursor() bool { return true }

// snapEntry is one document of a page being read.
type snapEntry struct {
	doc  changefeed.SnapshotDoc
	lsn  int64
	from lease.FeedRange // the feed range it was read from
}

// run reads one page.
type run struct {
	f      *Feed
	leases []*lease.Lease // as they were when the page began
	limit  int
	keep   func(id string, doc map[string]any) bool
	since  *time.Time // first reads of a range: only changes since (the one-document form)

	docs []snapEntry
	at   map[string]int // id → index in docs
	// read is where the page stopped in each feed range it read (and the
	// partition key it read it with).
	read []readPos
}

type readPos struct {
	tokenRange
	pk *azcosmos.PartitionKey
}

func newRun(f *Feed, leases []*lease.Lease, limit int, keep func(string, map[string]any) bool) *run {
	return &run{f: f, leases: leases, limit: limit, keep: keep, at: map[string]int{}}
}

func (r *run) result() *changefeed.SnapshotPage {
	p := &changefeed.SnapshotPage{Docs: make([]changefeed.SnapshotDoc, len(r.docs))}
	for i, e := range r.docs {
		p.Docs[i] = e.doc
	}
	return p
}

// page reads from cur until the page holds limit documents or every scope
// is read (done), and leaves cur where the next page starts.
func (r *run) page(ctx context.Context, sc scopes, cur *snapCursor) (done bool, err error) {
	for {
		if len(cur.E) == 0 {
			more, err := r.advance(ctx, sc, cur)
			if err != nil || !more {
				return !more, err
			}
		}
		if len(r.docs) >= r.limit {
			return false, nil
		}
		var pk *azcosmos.PartitionKey
		if len(sc.pks) > 0 {
			pk = &sc.pks[cur.K]
		}
		e := cur.E[0]
		next, items, from, err := r.readOnce(ctx, e, pk)
		if err != nil {
			return false, err
		}
		if items == nil {
			// Caught up: every range e became answered 304.
			for _, n := range next {
				r.noteRead(n, pk)
			}
			cur.E = cur.E[1:]
			continue
		}
		if cut, ok := r.consume(items, from.rng()); ok {
			for i := range next {
				if next[i].sameRange(from) {
					next[i].ETag = &cut
				}
			}
			from.ETag = &cut
		}
		r.noteRead(from, pk)
		cur.E = append(next, cur.E[1:]...)
	}
}

// advance moves cur to the next logical partition or feed range; more is
// false when every one is read.
func (r *run) advance(ctx context.Context, sc scopes, cur *snapCursor) (more bool, err error) {
	if len(sc.pks) > 0 {
		if cur.S {
			cur.K++
		}
		if cur.K >= len(sc.pks) {
			return false, nil
		}
		cur.S = true
		cur.E = []tokenRange{{Min: sc.epks[cur.K], Max: epkAfter(sc.epks[cur.K])}}
		return true, nil
	}
	if cur.N == "FF" {
		return false, nil
	}
	rs, err := r.f.Ranges(ctx)
	if err != nil {
		return false, err
	}
	for _, rg := range rs {
		if compareEPK(rg.Min, cur.N) <= 0 && compareEPK(cur.N, rg.Max) < 0 {
			cur.E = []tokenRange{{Min: cur.N, Max: rg.Max}}
			cur.N = normMax(rg.Max)
			return true, nil
		}
	}
	return false, fmt.Errorf("cosmos snapshot: no feed range holds %q", cur.N)
}

// readOnce reads e once. next is what e became, each with its position (a
// split makes several). items is the page read, from the range from; nil
// when every range of next is caught up (304).
func (r *run) readOnce(ctx context.Context, e tokenRange, pk *azcosmos.PartitionKey) (next []tokenRange, items [][]byte, from tokenRange, err error) {
	tok := token{Version: tokenVersion, ResourceID: r.f.rid, Continuation: []tokenRange{e}}.String()
	opts := azcosmos.ChangeFeedOptions{MaxItemCount: snapshotItems, Continuation: &tok, PartitionKey: pk}
	rctx := ctx
	if e.ETag == nil && r.since != nil {
		t := *r.since
		opts.StartFrom = &t
		rctx, opts = readContext(ctx, opts)
	}
	resp, err := r.f.c.ReadChangeFeed(rctx, &opts)
	for wait := 100 * time.Millisecond; err != nil && snapshotRetryable(err) && wait <= 2*time.Second && ctx.Err() == nil; wait *= 2 {
		// A split in progress: the SDK's range cache, or the gateway,
		// asks to be asked again.
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		resp, err = r.f.c.ReadChangeFeed(rctx, &opts)
	}
	if err != nil {
		return nil, nil, from, fmt.Errorf("cosmos snapshot: read the change feed of [%s, %s): %w", e.Min, e.Max, err)
	}
	t, err := parseToken(resp.ContinuationToken)
	if err != nil {
		return nil, nil, from, err
	}
	if len(resp.Items) == 0 {
		return t.Continuation, nil, from, nil
	}
	if resp.FeedRange == nil {
		return nil, nil, from, errors.New("cosmos snapshot: a change feed page without its feed range")
	}
	got := tokenRange{Min: resp.FeedRange.MinInclusive, Max: resp.FeedRange.MaxExclusive}
	for _, n := range t.Continuation {
		if n.sameRange(got) {
			return t.Continuation, resp.Items, n, nil
		}
	}
	return nil, nil, from, fmt.Errorf("cosmos snapshot: the page's feed range [%s, %s) is not in the continuation", got.Min, got.Max)
}

// consume takes a page's items in feed order. Once the page is full it
// stops before the next item of another LSN (items of one LSN, one
// transaction, stay together) and returns the position after the last
// item taken.
func (r *run) consume(items [][]byte, from lease.FeedRange) (cut string, ok bool) {
	last := int64(-1)
	for _, raw := range items {
		ch := r.f.dec.decode(raw)
		lsn, err := strconv.ParseInt(ch.Version, 10, 64)
		if err != nil {
			lsn = last
		}
		if len(r.docs) >= r.limit && lsn != last && last >= 0 {
			return strconv.Quote(strconv.FormatInt(last, 10)), true
		}
		last = lsn
		r.take(ch, lsn, from, nil)
	}
	return "", false
}

// take records a change read at lsn: a document that matches, a
// soft-deleted one that matches (Deleted), or one the page holds that no
// longer matches (Deleted: it left the page's group). only, when set,
// limits it to documents the page holds and that are in only; take
// reports whether it replaced an entry.
func (r *run) take(ch *changefeed.Change, lsn int64, from lease.FeedRange, only map[string]bool) bool {
	if ch.Err != nil || lsn < 0 {
		r.f.cfg.Logger.Debug("cosmos snapshot: an undecodable item is left out (the stream sends it as a refetch marker)", "id", ch.ID, "err", ch.Err)
		return false
	}
	doc, deleted := ch.After, false
	if ch.Op == changefeed.Delete {
		doc, deleted = ch.Before, true
	}
	i, had := r.at[ch.ID]
	if only != nil && (!had || !only[ch.ID]) {
		return false
	}
	keep := r.keep(ch.ID, doc)
	if !keep && !had {
		return false
	}
	e := snapEntry{lsn: lsn, from: from, doc: changefeed.SnapshotDoc{ID: ch.ID, Version: ch.Version}}
	if keep && !deleted {
		e.doc.Doc = ch.After
	} else {
		e.doc.Deleted = true
	}
	if had {
		if lsn <= r.docs[i].lsn {
			return false
		}
		r.docs[i] = e
		return true
	}
	r.at[ch.ID] = len(r.docs)
	r.docs = append(r.docs, e)
	return true
}

// noteRead records where the page stopped in a range.
func (r *run) noteRead(p tokenRange, pk *azcosmos.PartitionKey) {
	for i := range r.read {
		if r.read[i].sameRange(p) {
			r.read[i].ETag = p.ETag
			return
		}
	}
	r.read = append(r.read, readPos{tokenRange: p, pk: pk})
}

// settle waits until the streams have published up to where the page read,
// and makes every document's version one the stream read (see the comment
// at the top of this file).
func (r *run) settle(ctx context.Context, w *waiter) error {
	ctx, cancel := context.WithTimeout(ctx, snapshotWait)
	defer cancel()
	pending := map[string]bool{}
	for _, e := range r.docs {
		if e.lsn > publishedLSN(r.leases, e.from) {
			pending[e.doc.ID] = true
		}
	}
	for round := 0; ; round++ {
		ls, err := w.wait(ctx, r.read)
		if err != nil {
			return err
		}
		if len(pending) == 0 {
			return nil
		}
		if round == snapshotRounds {
			return fmt.Errorf("cosmos snapshot: %d documents kept changing over %d rounds; retry", len(pending), round)
		}
		changed, err := r.reread(ctx, pending)
		if err != nil {
			return err
		}
		pending = map[string]bool{}
		for id := range changed {
			if e := r.docs[r.at[id]]; e.lsn > publishedLSN(ls, e.from) {
				pending[id] = true
			}
		}
	}
}

// reread reads on, to the end, the ranges that hold pending documents and
// takes their new versions; it returns the ids that changed.
func (r *run) reread(ctx context.Context, pending map[string]bool) (map[string]bool, error) {
	changed := map[string]bool{}
	var read []readPos
	for _, p := range r.read {
		holds := false
		for id := range pending {
			if from := r.docs[r.at[id]].from; overlaps(from.Min, from.Max, p.Min, p.Max) {
				holds = true
				break
			}
		}
		if !holds {
			read = append(read, p)
			continue
		}
		queue := []tokenRange{p.tokenRange}
		for len(queue) > 0 {
			next, items, from, err := r.readOnce(ctx, queue[0], p.pk)
			if err != nil {
				return nil, err
			}
			if items == nil {
				for _, n := range next {
					read = append(read, readPos{tokenRange: n, pk: p.pk})
				}
				queue = queue[1:]
				continue
			}
			for _, raw := range items {
				ch := r.f.dec.decode(raw)
				lsn, err := strconv.ParseInt(ch.Version, 10, 64)
				if err != nil {
					continue
				}
				if r.take(ch, lsn, from.rng(), pending) {
					changed[ch.ID] = true
				}
			}
			queue = append(next, queue[1:]...)
		}
	}
	r.read = read
	return changed, nil
}

// snapshotOne reads the documents with id q.ID: a query finds them (and
// their partition keys), then their logical partitions' change feeds (or
// every range's) from a minute before their _ts give them at their _lsn.
func (f *Feed) snapshotOne(ctx context.Context, w *waiter, q changefeed.SnapshotQuery) (*changefeed.SnapshotPage, error) {
	ls, err := w.leases(ctx)
	if err != nil {
		return nil, err
	}
	found, err := f.findID(ctx, q.ID)
	if err != nil {
		return nil, err
	}
	r := newRun(f, ls, math.MaxInt, matcher(q.Match, q.ID))
	path, pkOK := f.pkPath()
	for _, doc := range found {
		var sc scopes
		if v, ok := path.Get(doc); pkOK && ok {
			if epk, err := effectivePartitionKey(pkComponent(v)); err == nil {
				sc = scopes{pks: []azcosmos.PartitionKey{partitionKeyOf(pkComponent(v))}, epks: []string{epk}}
			}
		}
		var since *time.Time
		if n, ok := doc["_ts"].(json.Number); ok {
			if s, err := n.Int64(); err == nil {
				t := time.Unix(s, 0).Add(-idLookback).UTC()
				since = &t
			}
		}
		for {
			r.since = since
			n := len(r.docs)
			var cur snapCursor
			if _, err := r.page(ctx, sc, &cur); err != nil {
				return nil, err
			}
			if len(r.docs) > n || since == nil {
				break
			}
			// Not found since its _ts: read from the beginning.
			since = nil
		}
	}
	r.since = nil
	if err := r.settle(ctx, w); err != nil {
		return nil, err
	}
	return r.result(), nil
}

// pkComponent turns a decoded partition key value into a hashable one.
func pkComponent(v any) any {
	if n, ok := v.(json.Number); ok {
		if x, err := n.Float64(); err == nil {
			return x
		}
	}
	switch v.(type) {
	case string, bool, nil, float64:
		return v
	}
	return fmt.Sprint(v) // not a valid partition key: no logical partition matches
}

// findID queries the documents with id (one per logical partition holding
// one).
func (f *Feed) findID(ctx context.Context, id string) ([]map[string]any, error) {
	pager := f.c.NewQueryItemsPager("SELECT * FROM c WHERE c.id = @id", azcosmos.NewPartitionKey(),
		&azcosmos.QueryOptions{QueryParameters: []azcosmos.QueryParameter{{Name: "@id", Value: id}}})
	var out []map[string]any
	for pager.More() {
		resp, err := pager.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("cosmos snapshot: query id %q: %w", id, err)
		}
		for _, item := range resp.Items {
			var doc map[string]any
			dec := json.NewDecoder(bytes.NewReader(item))
			dec.UseNumber()
			if dec.Decode(&doc) == nil && doc != nil {
				out = append(out, doc)
			}
		}
	}
	return out, nil
}

// waiter reads the streams' published positions from the lease store.
type waiter struct {
	store  lease.Store
	prefix string
}

func (w *waiter) leases(ctx context.Context) ([]*lease.Lease, error) {
	ls, err := w.store.List(ctx, w.prefix)
	if err != nil {
		return nil, fmt.Errorf("cosmos snapshot: read the leases: %w", err)
	}
	return ls, nil
}

// wait returns the leases once every position is published: the leases of
// its range have checkpoints at or past it.
func (w *waiter) wait(ctx context.Context, positions []readPos) ([]*lease.Lease, error) {
	backoff := 5 * time.Millisecond
	for {
		ls, err := w.leases(ctx)
		if err == nil && published(ls, positions) {
			return ls, nil
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("cosmos snapshot: the streams did not publish up to the snapshot within %v (are they far behind, or stopped?): %w", snapshotWait, changefeed.ErrNotStreaming)
			}
			return nil, ctx.Err()
		case <-t.C:
		}
		backoff = min(backoff*2, 100*time.Millisecond)
	}
}

func published(ls []*lease.Lease, positions []readPos) bool {
	for _, p := range positions {
		if p.ETag == nil {
			continue
		}
		n, ok := etagLSN(*p.ETag)
		if !ok || n > publishedLSN(ls, p.rng()) {
			return false
		}
	}
	return true
}

// publishedLSN is the LSN up to which every change of range r was
// published: the lowest checkpoint of the leases covering r; -1 when a part
// of r has no lease, or a lease no known position.
func publishedLSN(ls []*lease.Lease, r lease.FeedRange) int64 {
	var cover []lease.FeedRange
	out := int64(math.MaxInt64)
	for _, l := range ls {
		if l.Range.Partition != "" || l.Range.IsZero() || !overlaps(l.Range.Min, l.Range.Max, r.Min, r.Max) {
			continue
		}
		n, ok := tokenLSN(l.Continuation)
		if !ok || l.Continuation == "" {
			return -1
		}
		out = min(out, n)
		cover = append(cover, l.Range)
	}
	slices.SortFunc(cover, func(a, b lease.FeedRange) int { return compareEPK(a.Min, b.Min) })
	at := r.Min
	for _, c := range cover {
		if compareEPK(c.Min, at) > 0 {
			return -1
		}
		if compareEPK(normMax(c.Max), at) > 0 {
			at = normMax(c.Max)
		}
	}
	if compareEPK(at, normMax(r.Max)) < 0 {
		return -1
	}
	return out
}

func (e tokenRange) sameRange(o tokenRange) bool {
	return compareEPK(e.Min, o.Min) == 0 && compareEPK(normMax(e.Max), normMax(o.Max)) == 0
}

func (e tokenRange) rng() lease.FeedRange { return lease.FeedRange{Min: e.Min, Max: normMax(e.Max)} }

// snapshotRetryable: errors a snapshot read retries a few times before
// failing the request: the SDK's partition key range cache gave up while a
// split invalidated it (its documented advice is to retry), and the
// gateway's 410 (a range gone in a split), 429 and 503.
func snapshotRetryable(err error) bool {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		switch re.StatusCode {
		case http.StatusGone, http.StatusTooManyRequests, http.StatusServiceUnavailable:
			return true
		}
	}
	return strings.Contains(err.Error(), "partition key range cache")
}
