package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/wI2L/jsondiff"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/schema/wire"
)

// Output is one wire change for one target, already encoded.
type Output struct {
	Audience Audience
	Change   wire.Entry
	Raw      []byte // Change as compact JSON
	// Save, with a ShadowStore, is what to store once this output is
	// published.
	Save *ShadowRecord
}

// MapperStats counts what the mapper decided, for metrics.
type MapperStats struct {
	Refetch    int64 // refetch markers emitted
	Unroutable int64 // changes whose group or user could not be rendered
	Replays    int64 // changes dropped because a newer version was already sent
	Unchanged  int64 // updates that changed nothing a client sees
	// Fallbacks counts deletes sent to a whole hub because the source
	// could not tell which group or user held the document
	// (changefeed.Change.PrevUnknown).
	Fallbacks int64
}

// MapperOptions tunes a Mapper.
type MapperOptions struct {
	// ShadowSize bounds the documents kept to diff against.
	ShadowSize int
	// MaxChangeBytes is the largest encoded change sent as data; a larger one
	// becomes a refetch marker (reason too_large).
	MaxChangeBytes int
	Logger         *slog.Logger
	// Store, when set, is consulted on a shadow miss (after a restart or a
	// lease takeover); the processor saves to it after publishing.
	Store ShadowStore
}

// Mapper turns source changes into wire changes: it routes each change
// through the mappings of its collection, projects the document, and diffs
// it against the last version sent (the shadow). It is the pure core of the
// pipeline: no I/O, and used from one goroutine.
type Mapper struct {
	scratch []byte // encoding of the document being mapped
	// differ is reused: its patch and working storage are kept between
	// diffs (the patch is encoded before the next one).
	differ jsondiff.Differ
	// the last commit time formatted, and its text
	lastCommit time.Time
	lastTS     string
	rules      map[string][]*rule
	shadow     *shadow
	store      ShadowStore
	// passReplays: the store's records do not mark what was delivered
	// (see MemoryShadowStore.PassesReplays).
	passReplays bool
	max         int
	log         *slog.Logger
	// floor: versions below it were published before the stream was
	// reset (Forget); stored records older than it are not trusted.
	floor string
	Stats MapperStats
}

// Mapping routes one collection (a table, or a Cosmos container) to a hub,
// and within it to a group or a user rendered from the document.
type Mapping struct {
	Collection string
	Hub        string
	Group      string   // template over the document, e.g. "tenant-{/tenant}"; empty: the whole hub
	User       string   // template, like Group (never with it)
	Method     string   // SignalR method the clients handle; default DefaultMethod
	Key        []string // JSON Pointers of the document id; default the source's id
	Include    []string // only these JSON Pointers are sent
	Exclude    []string // these JSON Pointers are never sent
}

// DefaultMethod is the SignalR method of a Mapping that names none.
const DefaultMethod = "changes"

// NewMapper compiles mappings.
func NewMapper(mappings []Mapping, o MapperOptions) (*Mapper, error) {
	m := &Mapper{rules: map[string][]*rule{}, shadow: newShadow(o.ShadowSize), store: o.Store, max: o.MaxChangeBytes, log: o.Logger}
	if p, ok := o.Store.(interface{ PassesReplays() bool }); ok {
		m.passReplays = p.PassesReplays()
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.max <= 0 {
		m.max = MaxBatchBytes - 1024
	}
	routes, err := CompileRoutes(mappings)
	if err != nil {
		return nil, err
	}
	for _, rt := range routes {
		m.rules[rt.r.m.Collection] = append(m.rules[rt.r.m.Collection], rt.r)
	}
	return m, nil
}

// Collections lists the collections that have at least one mapping.
func (m *Mapper) Collections() []string {
	out := make([]string, 0, len(m.rules))
	for c := range m.rules {
		out = append(out, c)
	}
	return out
}

// Forget drops every document the mapper knows, after the stream was reset
// (changefeed.Reset at version v): what it sent before may no longer be
// what the source holds, so nothing is diffed against it, and a
// ShadowStore's older records are ignored from now on (ForgetRecords makes
// the store forget them too).
func (m *Mapper) Forget(v string) {
	for _, rs := range m.rules {
		for _, r := range rs {
			m.shadow.dropRule(r.idx)
		}
	}
	if m.floor == "" || wire.CompareVersions(v, m.floor) > 0 {
		m.floor = v
	}
}

// ForgetRecords are the ShadowStore records that forget every document of
// every mapping older than v (see Forget).
func (m *Mapper) ForgetRecords(v string) []ShadowRecord {
	var out []ShadowRecord
	for _, rs := range m.rules {
		for _, r := range rs {
			out = append(out, ShadowRecord{Key: r.fp + "/", V: v, Prefix: true})
		}
	}
	return out
}

// Hubs lists each hub of the mappings once, with the method of its first
// mapping: the hub-wide audiences.
func (m *Mapper) Hubs() []Audience {
	var out []Audience
	seen := map[string]bool{}
	for _, rs := range m.rules {
		for _, r := range rs {
			if !seen[r.m.Hub] {
				seen[r.m.Hub] = true
				out = append(out, Audience{Hub: r.m.Hub, Method: r.m.Method})
			}
		}
	}
	return out
}

// Map appends the wire changes ch turns into to out and returns it. A change
// of a collection with no mapping yields nothing.
func (m *Mapper) Map(ch *changefeed.Change, out []Output) []Output {
	for _, r := range m.rules[ch.Collection] {
		out = m.mapRule(r, ch, out)
	}
	return out
}

func (m *Mapper) mapRule(r *rule, ch *changefeed.Change, out []Output) []Output {
	base := wire.Entry{Collection: r.m.Collection, V: ch.Version, TS: m.commitTS(ch.CommitTime)}
	if ch.Op == changefeed.Truncate {
		m.shadow.dropRule(r.idx)
		c := base
		c.Op = wire.OpTruncate
		// A truncate has no document to route by, so it goes to the whole
		// hub; it carries no data, only the collection name.
		n := len(out)
		out = m.emit(out, Audience{Hub: r.m.Hub, Method: r.m.Method}, c)
		if m.store != nil {
			out[n].Save = &ShadowRecord{Key: r.fp + "/", V: ch.Version, Prefix: true}
		}
		return out
	}

	doc := ch.After
	if ch.Op == changefeed.Delete {
		doc = ch.Before
	}
	id, err := r.id(doc, ch.ID)
	if err != nil {
		id = ch.ID
	}
	base.ID = id
	key := shadowKey{rule: r.idx, id: id}
	prev, hasPrev, deletedAt := m.lookup(r, key)
	// A document changed again while in the shadow is kept decoded from
	// now on (see shadowEntry.doc).
	hot := hasPrev
	if m.passReplays && ch.Version != "" {
		// A version at or below one that only the store knows (another
		// pipeline of this process sent it, not this one) is a replay a
		// checkpoint reset asked for: it goes out, whole. Such a store
		// (MemoryShadowStore) helps diffs and routing moves; it does not
		// decide what was delivered.
		if hasPrev && prev.loaded && wire.CompareVersions(ch.Version, prev.v) <= 0 {
			prev, hasPrev = shadowEntry{}, false
			m.shadow.del(key)
		}
		if deletedAt != "" && wire.CompareVersions(ch.Version, deletedAt) <= 0 {
			deletedAt = ""
		}
	}
	if ch.Version != "" && (hasPrev && wire.CompareVersions(ch.Version, prev.v) <= 0 ||
		deletedAt != "" && wire.CompareVersions(ch.Version, deletedAt) <= 0) {
		// A replay after a reconnect or restart: this version or a newer one
		// was already sent.
		m.Stats.Replays++
		return m.replayedKeyChange(r, ch, base, id, out)
	}
	if m.passReplays && hasPrev && prev.loaded && (ch.PrevUnknown || ch.BeforeVersion != "" && ch.BeforeVersion != prev.v) {
		// A copy from a store of this process alone (saved by another
		// pipeline of it) is a base for a patch only when it is the version
		// clients hold: after the lease moved away and back, another worker
		// may have sent newer versions. Sent whole instead. (A shared store
		// keeps the newest version anyone published.)
		prev, hasPrev = shadowEntry{}, false
	}

	if ch.Op == changefeed.Delete {
		t, ok := m.oldAudience(r, ch, prev, hasPrev)
		m.shadow.del(key)
		if !ok {
			return out
		}
		c := base
		c.Op = wire.OpDelete
		return m.attach(m.emit(out, t, c), len(out), r, id, nil)
	}

	// fill is the previous version the unchanged columns come from: the
	// document itself, or, when its key changed, the document it was.
	fill, hasFill := prev, hasPrev
	prevID := ch.PrevID
	if prevID == "" && ch.BeforeRoutes && ch.Op == changefeed.Update {
		// A routing index entry holds the key fields too: under a mapping
		// keyed by fields that changed, the document held had another id.
		prevID = ch.ID
	}
	keyMoved := false
	if prevID != "" {
		oldID, err := r.id(ch.Before, prevID)
		if err != nil {
			oldID = prevID
		}
		if oldID != id {
			keyMoved = true
			oldKey := shadowKey{rule: r.idx, id: oldID}
			old, hasOld, _ := m.lookup(r, oldKey)
			m.shadow.del(oldKey)
			if t, ok := m.oldAudience(r, ch, old, hasOld); ok {
				c := base
				c.Op, c.ID = wire.OpDelete, oldID
				out = m.attach(m.emit(out, t, c), len(out), r, oldID, nil)
			}
			if !hasPrev {
				fill, hasFill = old, hasOld
			}
		}
	}

	if ch.Err != nil || ch.After == nil {
		return m.refetch(out, r, ch, key, prev, hasPrev, base, "unencodable")
	}

	after := ch.After
	if len(ch.Unchanged) > 0 {
		// Unchanged (TOASTed) columns equal the previous version's; fill them
		// from the shadow, or ask the client to refetch. Never a placeholder.
		if !hasFill {
			return m.refetch(out, r, ch, key, prev, hasPrev, base, "unchanged_toast")
		}
		fd, err := fill.decoded()
		pd, ok := fd.(map[string]any)
		if err != nil || !ok {
			return m.refetch(out, r, ch, key, prev, hasPrev, base, "unchanged_toast")
		}
		filled := make(map[string]any, len(after)+len(ch.Unchanged))
		for k, v := range after {
			filled[k] = v
		}
		for _, col := range ch.Unchanged {
			v, ok := pd[col]
			if !ok && !r.excluded(col) {
				return m.refetch(out, r, ch, key, prev, hasPrev, base, "unchanged_toast")
			}
			filled[col] = v
		}
		after = filled
	}

	t, err := r.audience(after)
	if err != nil {
		m.unroutable(r, ch, err)
		return out
	}
	projected := r.project(after)
	// The document is encoded into a scratch buffer: emit copies it into
	// the output's encoding, and the output keeps that copy (one buffer per
	// change, not two).
	docBytes, err := wire.AppendValue(m.scratch[:0], projected)
	if len(docBytes) <= 1<<20 {
		m.scratch = docBytes[:0]
	}
	if err != nil {
		return m.refetch(out, r, ch, key, prev, hasPrev, base, "unencodable")
	}
	// Where the previous version went: the shadow knows; without it, a full
	// before-image (REPLICA IDENTITY FULL) tells. When the routing field
	// changed, the old audience loses the document and the new one gets all
	// of it.
	// A partial before-image that holds every routing field (a Cosmos
	// routing index entry) tells as much. When nothing tells and the source
	// says a previous version may be held somewhere, the whole hub is told
	// to delete it, and the new audience gets it whole at the same version
	// (a delete never undoes an upsert of its own version, in either
	// order).
	oldT, hasOld := prev.audience, hasPrev
	if !hasPrev && ch.Op == changefeed.Update && ch.PrevID == "" && !keyMoved && ch.Before != nil && (!ch.BeforePartial || ch.BeforeRoutes) && r.routed() {
		if bt, err := r.audience(ch.Before); err == nil {
			oldT, hasOld = bt, true
		}
	}
	if !hasOld && deletedAt == "" && ch.PrevUnknown && r.routed() {
		oldT, hasOld = m.fallback(r), true
	}
	if hasOld && oldT != t {
		c := base
		c.Op = wire.OpDelete
		out = m.emit(out, oldT, c)
		hasPrev = false
	}
	c := base
	if hasPrev && !ch.Refresh {
		pd, err := prev.decoded()
		var patch jsondiff.Patch
		if err == nil {
			patch, err = m.diff(pd, projected)
		}
		if err == nil && len(patch) == 0 {
			m.Stats.Unchanged++
			return out
		}
		if err == nil {
			pb, err := appendPatch(make([]byte, 0, 128), patch)
			if err == nil && len(pb) < len(docBytes) {
				c.Op, c.PV, c.Patch = wire.OpPatch, prev.v, pb
			}
		}
	}
	if c.Op == "" {
		c.Op, c.Doc = wire.OpUpsert, docBytes
	}
	e := shadowEntry{size: len(docBytes), v: ch.Version, audience: t}
	if hot {
		e.doc = projected
	}
	var saved []byte
	if m.store != nil && c.Op == wire.OpPatch {
		saved = bytes.Clone(docBytes) // the scratch buffer is reused
	}
	n := len(out)
	out = m.emit(out, t, c)
	if o := &out[len(out)-1]; o.Change.Op == wire.OpRefetch {
		// Too large to send: the client refetches, and nothing is kept to
		// diff against.
		m.shadow.del(key)
	} else {
		if c.Op == wire.OpUpsert {
			saved = o.Change.Doc // the output's copy, never modified
		}
		if !hot {
			e.raw = saved // an upsert's copy (a patch needs a previous version, so a hot document)
		}
		m.shadow.put(key, e)
	}
	return m.attach(out, n, r, id, saved)
}

// replayedKeyChange: a replayed update that changed the document's key
// still deletes the old key. The replay may have sent the old key's
// earlier versions again (its shadow entry went with the key change, so
// they are not recognized as replays), and a client that loaded its
// snapshot after the key change holds no tombstone to ignore them by: only
// this delete removes the old key again. (PostgreSQL before 17 does not
// persist a slot's confirmed position at a clean shutdown, so a restart
// replays minutes of changes.)
func (m *Mapper) replayedKeyChange(r *rule, ch *changefeed.Change, base wire.Entry, id string, out []Output) []Output {
	if ch.PrevID == "" {
		return out
	}
	oldID, err := r.id(ch.Before, ch.PrevID)
	if err != nil {
		oldID = ch.PrevID
	}
	if oldID == id {
		return out
	}
	m.shadow.del(shadowKey{rule: r.idx, id: oldID})
	t, ok := m.oldAudience(r, ch, shadowEntry{}, false)
	if !ok {
		return out
	}
	c := base
	c.Op, c.ID = wire.OpDelete, oldID
	return m.attach(m.emit(out, t, c), len(out), r, oldID, nil)
}

// commitTS is t in RFC 3339, formatted once per transaction: the changes of
// one transaction share its commit time.
func (m *Mapper) commitTS(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	if !t.Equal(m.lastCommit) || m.lastTS == "" {
		m.lastCommit, m.lastTS = t, t.UTC().Format(time.RFC3339Nano)
	}
	return m.lastTS
}

// attach, with a ShadowStore, marks the output emitted after index n with
// the record to save once it is published: the document when it went out as
// data, a deletion otherwise (a delete, or a refetch marker the client must
// resolve itself).
func (m *Mapper) attach(out []Output, n int, r *rule, id string, doc []byte) []Output {
	if m.store == nil || len(out) <= n {
		return out
	}
	o := &out[len(out)-1]
	rec := ShadowRecord{Key: r.fp + "/" + id, V: o.Change.V, Audience: o.Audience}
	if o.Change.Op == wire.OpUpsert || o.Change.Op == wire.OpPatch {
		rec.Doc = doc
	}
	o.Save = &rec
	return out
}

// lookup finds the last version sent of a document: in memory, or else in
// the ShadowStore (after a restart or a takeover), which also knows the
// version a document was deleted at.
func (m *Mapper) lookup(r *rule, key shadowKey) (e shadowEntry, ok bool, deletedAt string) {
	if e, ok := m.shadow.get(key); ok || m.store == nil {
		return e, ok, ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec, found, err := m.store.Load(ctx, r.fp+"/"+key.id)
	if err != nil {
		// Without it the change goes out whole: more bytes, nothing wrong.
		m.log.Warn("shadow store lookup failed; sending the whole document", "id", key.id, "err", err)
		return shadowEntry{}, false, ""
	}
	if !found || m.floor != "" && wire.CompareVersions(rec.V, m.floor) < 0 {
		return shadowEntry{}, false, ""
	}
	if rec.Doc == nil {
		return shadowEntry{}, false, rec.V
	}
	var doc any
	if err := unmarshalNumber(rec.Doc, &doc); err != nil {
		return shadowEntry{}, false, ""
	}
	e = shadowEntry{doc: doc, size: len(rec.Doc), v: rec.V, audience: rec.Audience, loaded: true}
	m.shadow.put(key, e)
	return e, true, ""
}

func (r *rule) excluded(col string) bool {
	for _, p := range r.exclude {
		if len(p) == 1 && p[0] == col {
			return true
		}
	}
	if len(r.include) == 0 {
		return false
	}
	for _, p := range r.include {
		if len(p) > 0 && p[0] == col {
			return false
		}
	}
	return true
}

// oldAudience is where a deleted document was visible: the shadow knows for
// sure; otherwise the before-image, if it holds the routing fields.
func (m *Mapper) oldAudience(r *rule, ch *changefeed.Change, prev shadowEntry, hasPrev bool) (Audience, bool) {
	if hasPrev {
		return prev.audience, true
	}
	if ch.PrevUnknown && r.routed() {
		// Which group held the document is unknown (the source has no
		// before-image of it, and the shadow does not know it): every
		// connection of the hub is told (a delete names no content).
		return m.fallback(r), true
	}
	t, err := r.audience(ch.Before)
	if err != nil {
		m.unroutable(r, ch, err)
		return Audience{}, false
	}
	return t, true
}

// fallback is the whole hub of r: where a delete goes when the group or
// user that held the document is unknown. Counted, so an operator sees what
// the routing index (or a before-image) would have saved.
func (m *Mapper) fallback(r *rule) Audience {
	m.Stats.Fallbacks++
	return Audience{Hub: r.m.Hub, Method: r.m.Method}
}

func (m *Mapper) refetch(out []Output, r *rule, ch *changefeed.Change, key shadowKey, prev shadowEntry, hasPrev bool, base wire.Entry, reason string) []Output {
	var t Audience
	var err error
	switch {
	case ch.After != nil:
		t, err = r.audience(ch.After)
		if err != nil && hasPrev {
			t, err = prev.audience, nil
		}
	case hasPrev:
		t = prev.audience
	default:
		t, err = r.audience(nil)
	}
	m.shadow.del(key)
	if err != nil {
		m.unroutable(r, ch, err)
		return out
	}
	m.log.Warn("sending refetch marker", "collection", ch.Collection, "id", base.ID, "version", ch.Version, "reason", reason, "err", ch.Err)
	c := base
	c.Op, c.Reason = wire.OpRefetch, reason
	m.Stats.Refetch++
	return m.attach(m.emit(out, t, c), len(out), r, base.ID, nil)
}

func (m *Mapper) unroutable(r *rule, ch *changefeed.Change, err error) {
	m.Stats.Unroutable++
	m.log.Error("change cannot be routed; it is not sent", "collection", ch.Collection, "id", ch.ID, "version", ch.Version,
		"hub", r.m.Hub, "err", err,
		"hint", "the group/user template needs fields the change does not carry (for deletes: REPLICA IDENTITY FULL)")
}

// emit encodes c for t. A change over the size limit becomes a refetch
// marker (the caller then drops its shadow entry: the client never got it).
func (m *Mapper) emit(out []Output, t Audience, c wire.Entry) []Output {
	raw, doc := c.AppendJSONDoc(make([]byte, 0, c.JSONSize()))
	// c.Doc may be the mapper's scratch buffer: keep the copy in raw.
	c.Doc = doc
	if len(raw) > m.max {
		m.log.Warn("change too large to send as data; sending refetch marker", "collection", c.Collection, "id", c.ID, "bytes", len(raw))
		m.Stats.Refetch++
		c = wire.Entry{Op: wire.OpRefetch, Collection: c.Collection, ID: c.ID, V: c.V, TS: c.TS, Reason: "too_large"}
		raw = c.AppendJSON(nil)
	}
	return append(out, Output{Audience: t, Change: c, Raw: raw})
}

func unmarshalNumber(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v)
}

// diff computes the RFC 6902 patch between two projected documents. They
// are compared as decoded values, with no encoding round trip; a value of a
// type jsondiff does not know (anything json.Unmarshal would not produce,
// e.g. an int from a custom source) falls back to comparing encodings.
//
// The patch is valid until the next call (the Differ keeps its storage).
func (m *Mapper) diff(prev, cur any) (jsondiff.Patch, error) {
	if p, ok := m.compare(prev, cur); ok {
		return p, nil
	}
	pb, err := wire.AppendValue(nil, prev)
	if err != nil {
		return nil, err
	}
	cb, err := wire.AppendValue(nil, cur)
	if err != nil {
		return nil, err
	}
	return jsondiff.CompareJSON(pb, cb, jsondiff.UnmarshalFunc(unmarshalNumber))
}

// compare diffs decoded values with the reused Differ; false when one holds
// a type jsondiff does not know (it panics on those, as
// jsondiff.CompareWithoutMarshal recovers).
func (m *Mapper) compare(prev, cur any) (p jsondiff.Patch, ok bool) {
	defer func() {
		if recover() != nil {
			m.differ = jsondiff.Differ{} // its state is half-written
			p, ok = nil, false
		}
	}()
	m.differ.Reset()
	m.differ.Compare(prev, cur)
	return m.differ.Patch(), true
}

// appendPatch encodes an RFC 6902 patch: op, path, and from or value as
// each operation needs.
func appendPatch(b []byte, p jsondiff.Patch) ([]byte, error) {
	b = append(b, '[')
	for i, o := range p {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"op":`...)
		b = wire.AppendString(b, o.Type)
		b = append(b, `,"path":`...)
		b = wire.AppendString(b, o.Path)
		switch o.Type {
		case jsondiff.OperationCopy, jsondiff.OperationMove:
			b = append(b, `,"from":`...)
			b = wire.AppendString(b, o.From)
		case jsondiff.OperationAdd, jsondiff.OperationReplace, jsondiff.OperationTest:
			b = append(b, `,"value":`...)
			var err error
			if b, err = wire.AppendValue(b, o.Value); err != nil {
				return nil, err
			}
		}
		b = append(b, '}')
	}
	return append(b, ']'), nil
}
