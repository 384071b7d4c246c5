package cosmos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/schema/template"
	"github.com/changecast/changecast/schema/wire"
)

// The latest-version change feed has no before-image: a document that moves
// to another group arrives with its new group only, and the old group, which
// holds it, would never be told. The routing index gives each change the
// before-image that matters: the routing (and key) fields of the version
// clients hold, per document id of the lease's range.
//
// It is built when the lease starts (seed) by reading the range's feed from
// the beginning: latest-version mode returns every current document once, at
// its _lsn. A document at or below the lease's checkpoint was published (or,
// with startFrom now, existed before the stream and is what snapshots
// answer), so clients hold it where its fields route it: known. A document
// above the checkpoint changed after it, and what clients hold of it is not
// known (a previous owner may or may not have published the newer
// versions): unknown, so its next change falls back to telling the whole
// hub. Soft-deleted documents are held nowhere and left out. The index then
// follows every change the source emits.

// routeEntry is what the index knows of one document.
type routeEntry struct {
	vals  []any // the route fields' values, in routeIndex.fields order; nil: unknown
	lsn   int64
	known bool
}

// routeIndex maps the document ids of one range to their routing fields.
// It is used from the source's goroutine only.
type routeIndex struct {
	fields []template.Pointer
	docs   map[string]routeEntry
	// blind: the seed could not read the whole range (it split under
	// it); every change is unknown until the children seed their own.
	blind bool
}

func newRouteIndex(fields []template.Pointer) *routeIndex {
	return &routeIndex{fields: fields, docs: map[string]routeEntry{}}
}

// seedItem adds one item read while seeding, under the rule above. An item
// seen twice (changed while the seed read) keeps its newest version.
func (x *routeIndex) seedItem(doc map[string]any, id string, lsn, checkpoint int64, deleted bool) {
	if e, ok := x.docs[id]; ok && e.lsn > lsn {
		return
	}
	switch {
	case lsn > checkpoint:
		x.docs[id] = routeEntry{lsn: lsn}
	case deleted:
		delete(x.docs, id)
	default:
		x.docs[id] = routeEntry{vals: x.values(doc), lsn: lsn, known: true}
	}
}

func (x *routeIndex) values(doc map[string]any) []any {
	vals := make([]any, len(x.fields))
	for i, p := range x.fields {
		vals[i], _ = p.Get(doc)
	}
	return vals
}

// before returns the before-image the index gives ch: the held version's
// route fields (BeforeRoutes), PrevUnknown when it is not known, nothing for
// a document no client holds. A soft delete of a document no client holds
// keeps its own document as before-image.
func (x *routeIndex) before(ch *changefeed.Change) {
	if ch.Err != nil || ch.ID == "" {
		return
	}
	if x.blind {
		ch.PrevUnknown = true
		return
	}
	e, ok := x.docs[ch.ID]
	switch {
	case !ok:
	case !e.known:
		ch.PrevUnknown = true
	default:
		b := make(map[string]any, len(x.fields))
		for i, p := range x.fields {
			if e.vals[i] != nil {
				p.Set(b, e.vals[i])
			}
		}
		ch.Before, ch.BeforePartial, ch.BeforeRoutes = b, true, true
		if e.lsn > 0 {
			ch.BeforeVersion = strconv.FormatInt(e.lsn, 10)
		}
	}
}

// follow records ch once the source has emitted it: what clients hold
// from now on.
func (x *routeIndex) follow(ch *changefeed.Change) {
	if ch.ID == "" {
		return
	}
	switch {
	case ch.Err != nil:
		// Sent as a refetch marker: where clients end up is not known.
		x.docs[ch.ID] = routeEntry{}
	case ch.Op == changefeed.Delete:
		delete(x.docs, ch.ID)
	default:
		lsn, _ := strconv.ParseInt(ch.Version, 10, 64)
		x.docs[ch.ID] = routeEntry{vals: x.values(ch.After), lsn: lsn, known: true}
	}
}

// unknownAll marks every change unknown: the index is off.
func unknownAll(ch *changefeed.Change) {
	if ch.Err == nil {
		ch.PrevUnknown = true
	}
}

// seedItemRaw decodes one change feed item for the seed: its id, _lsn, the
// soft-delete flag and the route fields. An item that cannot be decoded is
// skipped: the stream sends it as a refetch marker when it changes.
func (x *routeIndex) seedItemRaw(raw []byte, deleteAt template.Pointer, checkpoint int64) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if dec.Decode(&doc) != nil || doc == nil {
		return
	}
	id, _ := wire.ScalarString(doc["id"])
	n, ok := doc["_lsn"].(json.Number)
	if id == "" || !ok {
		return
	}
	lsn, err := n.Int64()
	if err != nil {
		return
	}
	deleted := false
	if deleteAt != nil {
		v, _ := deleteAt.Get(doc)
		deleted = v == true
	}
	x.seedItem(doc, id, lsn, checkpoint, deleted)
}

// seed builds the index of s's range: one read of its whole feed from the
// beginning. Entries are known only at or below the lease's checkpoint
// LSN; without one (a start from a time, or "now" not yet resolved) every
// document is unknown.
func (s *Source) seed(ctx context.Context) (*routeIndex, error) {
	x := newRouteIndex(s.f.cfg.RouteFields)
	checkpoint, ok := tokenLSN(s.l.Continuation)
	if !ok {
		checkpoint = -1
	}
	const pageSize = 1000 // the seed reads the whole range: fewer, larger pages
	opts := resume{}.options(s.f.rid, s.l.Range, pageSize)
	pages := 0
	for {
		resp, err := s.f.c.ReadChangeFeed(ctx, &opts)
		if err != nil {
			return nil, fmt.Errorf("cosmos: seed the routing index of lease %s: %w", s.l.Token, err)
		}
		if resp.RawResponse != nil {
			s.f.metrics.charge(resp.RequestCharge)
		}
		if t, err := parseToken(resp.ContinuationToken); err == nil && len(t.Continuation) > 1 {
			// The range split under the seed: the stream's first read
			// shows it too, and the children seed their own. Until then
			// nothing is known.
			x.blind = true
			return x, nil
		}
		if len(resp.Items) == 0 || resp.RawResponse != nil && resp.RawResponse.StatusCode == http.StatusNotModified {
			break
		}
		for _, item := range resp.Items {
			x.seedItemRaw(item, s.f.dec.deleteAt, checkpoint)
		}
		pages++
		tok := resp.ContinuationToken
		opts = azcosmos.ChangeFeedOptions{MaxItemCount: pageSize, Continuation: &tok}
	}
	known := 0
	for _, e := range x.docs {
		if e.known {
			known++
		}
	}
	s.log.Info("cosmos: routing index seeded", "documents", len(x.docs), "known", known, "unknown", len(x.docs)-known, "pages", pages)
	return x, nil
}
