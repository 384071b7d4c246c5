// Package snapshot serves GET {negotiate.path}/snapshot: the current
// documents a caller may see, each with its exact version, so that a
// client that connects first, then loads the snapshot, then applies what
// the hub sent meanwhile, holds exactly the source's documents.
//
// Start from Handler: it authorizes the caller as app negotiate does
// (hub.Negotiator.Authorize), lists the streams the caller may read (for
// each snapshot-enabled mapping of the hub, each group its claims grant,
// its own user, or the whole hub), reads them page by page from the
// source's changefeed.Snapshotter (with the mapping's group template
// inverted into a field match), and encodes each document as the stream
// does (publish.Route: projection and encoding).
package snapshot

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/history"
	"github.com/changecast/changecast/publish/hub"
	"github.com/changecast/changecast/publish/inflight"
	"github.com/changecast/changecast/schema/wire"
)

// Authorizer lets callers in as app negotiate does; *hub.Negotiator is one.
type Authorizer interface {
	Authorize(r *http.Request, hub string) (hub.Caller, error)
	Refuse(w http.ResponseWriter, err error)
}

// Config configures a Handler. Zero values take the documented defaults.
type Config struct {
	// Routes are the mappings whose documents snapshots serve (the
	// snapshot-enabled ones). Required.
	Routes []publish.Route
	// Source reads the documents. Required.
	Source changefeed.Snapshotter
	// Auth authorizes callers. Required.
	Auth Authorizer
	// Streams, when set, gives each stream's last offset: the first page
	// says, for every stream the caller reads, the offset appended last
	// before the snapshot began, so snapshot + every envelope after it is
	// the current state. A history.Store is one.
	Streams Streams
	// Limit is a page's default size; MaxLimit bounds what ?limit= asks.
	// Defaults 1000 and 10000.
	Limit, MaxLimit int
	// Prefetch bounds the pages read ahead at once (the next page of a
	// snapshot being read, for its next request). Default 8; negative:
	// none.
	Prefetch int
	// Reads bounds the requests each caller has in flight (429 with
	// Retry-After over it); share one with the /changes handler. Nil: no
	// bound.
	Reads *inflight.Limiter
	// Peers, when set, answer the requests this worker cannot (its
	// Source says changefeed.ErrNotStreaming): see Peers.
	Peers   *Peers
	Logger  *slog.Logger
	Metrics *Metrics // nil: none
}

// Streams tells where each stream's history is.
type Streams interface {
	Last(ctx context.Context, stream string) (epoch string, offset uint64, err error)
}

// Defaults of Config.
const (
	DefaultLimit    = 1000
	DefaultMaxLimit = 10000
	DefaultPrefetch = 8
)

// Handler serves snapshots; mount it at GET {negotiate.path}/snapshot.
type Handler struct {
	cfg        Config
	prefetched prefetchCache
	refusals   sometimes       // debug logs of refused input
	ctx        context.Context // ends at Close: pages read ahead stop
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

// NewHandler checks cfg and returns the handler.
func NewHandler(cfg Config) (*Handler, error) {
	if cfg.Source == nil || cfg.Auth == nil {
		return nil, errors.New("snapshot: Config needs Source and Auth")
	}
	if cfg.Limit <= 0 {
		cfg.Limit = DefaultLimit
	}
	if cfg.MaxLimit <= 0 {
		cfg.MaxLimit = DefaultMaxLimit
	}
	if cfg.Prefetch == 0 {
		cfg.Prefetch = DefaultPrefetch
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Handler{cfg: cfg, prefetched: prefetchCache{pages: map[string]*prefetched{}, now: time.Now}}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	return h, nil
}

// stream is one audience's documents under one mapping.
type stream struct {
	route publish.Route
	match []changefeed.FieldMatch
	aud   publish.Audience // Hub and Group or User (Method unused)
}

// cursor is the opaque ?cursor=: the stream reached and the source's
// cursor within it.
type cursor struct {
	Stream int    `json:"s"`
	After  string `json:"a,omitempty"`
}

// ServeHTTP answers GET …/snapshot?hub=H[&group=G][&collection=C&id=ID][&limit=N][&cursor=X].
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	q := r.URL.Query()
	caller, err := h.cfg.Auth.Authorize(r, q.Get("hub"))
	if err != nil {
		h.cfg.Metrics.refused(hub.StatusOf(err))
		h.cfg.Auth.Refuse(w, err)
		return
	}
	if h.cfg.Reads != nil {
		release, ok := h.cfg.Reads.Acquire(inflight.Key(r, caller))
		if !ok {
			h.cfg.Metrics.refused(http.StatusTooManyRequests)
			inflight.Refuse(w)
			return
		}
		defer release()
	}
	if coll, id := q.Get("collection"), q.Get("id"); coll != "" || id != "" {
		h.one(w, r, caller, coll, id, start)
		return
	}
	groups := caller.Groups
	narrowed := q.Get("group")
	if narrowed != "" {
		if !slices.Contains(caller.Groups, narrowed) {
			h.cfg.Metrics.refused(http.StatusForbidden)
			h.cfg.Auth.Refuse(w, &hub.AuthError{Status: http.StatusForbidden, Code: "Error.Forbidden", Msg: "that group is not granted to you"})
			return
		}
		groups = []string{narrowed}
	}
	limit := h.cfg.Limit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "limit must be a positive integer")
			return
		}
		limit = min(n, h.cfg.MaxLimit)
	}
	var cur cursor
	if s := q.Get("cursor"); s != "" {
		var ok bool
		if cur, ok = decodeCursor(s); !ok {
			h.badCursor(w, errors.New("the cursor does not decode"))
			return
		}
	}
	req := pageRequest{caller: caller, groups: groups, narrowed: narrowed != "", limit: limit, cur: cur}
	var (
		body []byte
		n    int
		next *cursor
	)
	if p := h.prefetched.take(req.key()); p != nil {
		select {
		case <-p.done:
		case <-r.Context().Done():
			return
		}
		body, n, next, err = p.body, p.n, p.next, p.err
	}
	if body == nil {
		// Not read ahead, or that failed (the stream was not ready then).
		body, n, next, err = h.page(r.Context(), req)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if next != nil {
		// Read the next page while this one travels and is decoded: a
		// client reads pages one after the other, and would otherwise wait
		// for the source's round trip (watermark, SELECT, encoding) on
		// every page.
		req.cur = *next
		h.prefetch(req)
	}
	h.cfg.Metrics.served(n, time.Since(start))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

// pageRequest is one page of a caller's snapshot.
type pageRequest struct {
	caller   hub.Caller
	groups   []string
	narrowed bool
	limit    int
	cur      cursor
}

// key names the page for one caller: a prefetched page is served only to
// a request of the same caller (hub, user, groups) for the same page. An
// anonymous caller has a new user id on every request, and what it reads
// depends on its hub and groups alone: its pages are named by those and
// the cursor, which it keeps from page to page.
func (p pageRequest) key() string {
	user := p.caller.User
	if p.caller.Anonymous {
		user = ""
	}
	b, _ := json.Marshal([]any{p.caller.Hub, user, p.caller.Anonymous, p.groups, p.narrowed, p.limit, p.cur})
	return string(b)
}

// page reads and encodes one page: the documents from the cursor on, at
// most limit, and the cursor of the next page (nil on the last).
func (h *Handler) page(ctx context.Context, p pageRequest) (body []byte, n int, next *cursor, err error) {
	caller, groups, limit, cur := p.caller, p.groups, p.limit, p.cur
	streams := h.streams(caller, groups, p.narrowed)
	var buf bytes.Buffer
	buf.Grow(min(limit, 1000) * 256)
	buf.WriteString(`{"hub":`)
	buf.Write(wire.AppendString(nil, caller.Hub))
	buf.WriteString(`,"groups":`)
	gs, _ := json.Marshal(nonNil(groups))
	buf.Write(gs)
	if h.cfg.Streams != nil && cur == (cursor{}) {
		// Before any page is read: the snapshot begins after these.
		if err := h.appendStreams(&buf, ctx, caller, groups, p.narrowed); err != nil {
			return nil, 0, nil, err
		}
	}
	buf.WriteString(`,"docs":[`)
	for i := cur.Stream; i < len(streams) && n < limit; i++ {
		st := streams[i]
		after := ""
		if i == cur.Stream {
			after = cur.After
		}
		for n < limit {
			page, err := h.cfg.Source.Snapshot(ctx, changefeed.SnapshotQuery{Collection: st.route.Mapping().Collection,
				Match: st.match, After: after, Limit: limit - n})
			if err != nil {
				return nil, 0, nil, err
			}
			for _, d := range page.Docs {
				if h.appendDoc(&buf, n > 0, st, d) {
					n++
				}
			}
			if page.Next == "" {
				break
			}
			after = page.Next
			if n >= limit {
				next = &cursor{Stream: i, After: after}
			}
		}
		if n >= limit && next == nil && i+1 < len(streams) {
			next = &cursor{Stream: i + 1}
		}
	}
	buf.WriteString("]")
	if next != nil {
		buf.WriteString(`,"next":`)
		buf.Write(wire.AppendString(nil, encodeCursor(*next)))
	}
	buf.WriteString("}")
	return buf.Bytes(), n, next, nil
}

// appendStreams writes "streams": the position of every stream the caller
// reads (its groups, its user, the whole hub), each named as envelopes name
// their audience.
func (h *Handler) appendStreams(buf *bytes.Buffer, ctx context.Context, c hub.Caller, groups []string, narrowed bool) error {
	hubName := c.Hub
	for _, rt := range h.cfg.Routes {
		if strings.EqualFold(rt.Mapping().Hub, c.Hub) {
			hubName = rt.Mapping().Hub
			break
		}
	}
	auds := make([]publish.Audience, 0, len(groups)+2)
	for _, g := range groups {
		auds = append(auds, publish.Audience{Hub: hubName, Group: g})
	}
	if !narrowed {
		if !c.Anonymous {
			auds = append(auds, publish.Audience{Hub: hubName, User: c.User})
		}
		auds = append(auds, publish.Audience{Hub: hubName})
	}
	buf.WriteString(`,"streams":[`)
	for i, a := range auds {
		epoch, off, err := h.cfg.Streams.Last(ctx, history.Stream(a))
		if err != nil {
			return err
		}
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteByte('{')
		switch {
		case a.Group != "":
			buf.WriteString(`"group":`)
			buf.Write(wire.AppendString(nil, a.Group))
			buf.WriteByte(',')
		case a.User != "":
			buf.WriteString(`"user":`)
			buf.Write(wire.AppendString(nil, a.User))
			buf.WriteByte(',')
		}
		buf.WriteString(`"epoch":`)
		buf.Write(wire.AppendString(nil, epoch))
		buf.WriteString(`,"offset":`)
		buf.WriteString(strconv.FormatUint(off, 10))
		buf.WriteByte('}')
	}
	buf.WriteByte(']')
	return nil
}

// streams lists what the caller reads, in a fixed order (so cursors stay
// valid): each mapping of the hub in config order; for a group mapping,
// each granted group in order; for a user mapping, the caller's own user
// (not anonymous callers); a hub-wide mapping once. With a narrowed group,
// only that group's streams.
func (h *Handler) streams(c hub.Caller, groups []string, narrowed bool) []stream {
	var out []stream
	for _, rt := range h.cfg.Routes {
		m := rt.Mapping()
		if !strings.EqualFold(m.Hub, c.Hub) {
			continue
		}
		switch {
		case m.Group != "":
			for _, g := range groups {
				if match, ok := rt.Match(g); ok {
					out = append(out, stream{route: rt, match: match, aud: publish.Audience{Hub: m.Hub, Group: g}})
				}
			}
		case narrowed:
		case m.User != "":
			if c.Anonymous {
				continue
			}
			if match, ok := rt.Match(c.User); ok {
				out = append(out, stream{route: rt, match: match, aud: publish.Audience{Hub: m.Hub, User: c.User}})
			}
		default:
			out = append(out, stream{route: rt, aud: publish.Audience{Hub: m.Hub}})
		}
	}
	return out
}

// appendDoc writes one document of st, after checking that the stream
// would send it there: a match on text (the inverted template) is a
// prefilter, the rendered audience is the rule, so a snapshot never shows
// a document the stream would not send this caller.
func (h *Handler) appendDoc(buf *bytes.Buffer, comma bool, st stream, d changefeed.SnapshotDoc) bool {
	id := d.ID
	if !d.Deleted {
		a, err := st.route.Audience(d.Doc)
		if err != nil || a.Group != st.aud.Group || a.User != st.aud.User {
			return false
		}
		id = st.route.ID(d.Doc, d.ID)
	}
	// Written into the buffer's free space and committed once whole: a
	// document that cannot be encoded leaves nothing behind.
	b := buf.AvailableBuffer()
	if comma {
		b = append(b, ',')
	}
	b = append(b, `{"collection":`...)
	b = wire.AppendString(b, st.route.Mapping().Collection)
	b = append(b, `,"id":`...)
	b = wire.AppendString(b, id)
	b = append(b, `,"v":`...)
	b = wire.AppendString(b, d.Version)
	switch {
	case st.aud.Group != "":
		b = append(b, `,"group":`...)
		b = wire.AppendString(b, st.aud.Group)
	case st.aud.User != "":
		b = append(b, `,"user":`...)
		b = wire.AppendString(b, st.aud.User)
	}
	if d.Deleted {
		b = append(b, `,"deleted":true`...)
	} else {
		b = append(b, `,"doc":`...)
		var err error
		if b, err = st.route.Encode(b, d.Doc); err != nil {
			h.cfg.Logger.Warn("snapshot: a document cannot be encoded; left out (the stream sends it as a refetch marker)", "collection", st.route.Mapping().Collection, "id", id, "err", err)
			return false
		}
	}
	b = append(b, '}')
	if len(b) > cap(buf.AvailableBuffer()) {
		// It outgrew the free space (and was copied): grow for the next.
		buf.Grow(2 * len(b))
	}
	buf.Write(b)
	return true
}

// one answers the one-document form: the document, if it exists and goes
// to the caller (one of its groups, itself, or the whole hub), else 404,
// never telling which.
func (h *Handler) one(w http.ResponseWriter, r *http.Request, c hub.Caller, coll, id string, start time.Time) {
	if coll == "" || id == "" {
		writeError(w, http.StatusBadRequest, "give both collection= and id=")
		return
	}
	var routes []publish.Route
	for _, rt := range h.cfg.Routes {
		if m := rt.Mapping(); strings.EqualFold(m.Hub, c.Hub) && m.Collection == coll {
			routes = append(routes, rt)
		}
	}
	if len(routes) > 0 {
		page, err := h.cfg.Source.Snapshot(r.Context(), changefeed.SnapshotQuery{Collection: coll, ID: id, Limit: 1})
		if err != nil {
			h.fail(w, r, err)
			return
		}
		for _, d := range page.Docs {
			if d.Deleted {
				continue
			}
			for _, rt := range routes {
				a, err := rt.Audience(d.Doc)
				if err != nil {
					continue
				}
				var st stream
				switch {
				case a.Group != "" && slices.Contains(c.Groups, a.Group):
					st = stream{route: rt, aud: publish.Audience{Hub: rt.Mapping().Hub, Group: a.Group}}
				case a.User != "" && a.User == c.User && !c.Anonymous:
					st = stream{route: rt, aud: publish.Audience{Hub: rt.Mapping().Hub, User: a.User}}
				case a.Group == "" && a.User == "":
					st = stream{route: rt, aud: publish.Audience{Hub: rt.Mapping().Hub}}
				default:
					continue
				}
				var buf bytes.Buffer
				buf.WriteString(`{"hub":`)
				buf.Write(wire.AppendString(nil, c.Hub))
				buf.WriteString(`,"docs":[`)
				if !h.appendDoc(&buf, false, st, d) {
					continue
				}
				buf.WriteString("]}")
				h.cfg.Metrics.served(1, time.Since(start))
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Cache-Control", "no-store")
				w.Write(buf.Bytes())
				return
			}
		}
	}
	h.cfg.Metrics.refused(http.StatusNotFound)
	writeError(w, http.StatusNotFound, "no such document")
}

// fail answers a source error: when this instance cannot read beside the
// stream now, the answer of a peer that can (Config.Peers), else 503
// (retry); 400 for a cursor it did not make, 500 otherwise.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return
	}
	var bad interface{ BadCursor() bool }
	switch {
	case errors.Is(err, changefeed.ErrNotStreaming):
		if h.cfg.Peers != nil {
			h.cfg.Peers.serve(w, r, h.cfg.Logger)
			return
		}
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "the snapshot cannot be read now; retry")
	case errors.Is(err, changefeed.ErrUnsupported):
		writeError(w, http.StatusNotImplemented, err.Error())
	case errors.As(err, &bad) && bad.BadCursor():
		h.badCursor(w, err)
	default:
		h.cfg.Logger.Error("snapshot failed", "err", err)
		writeError(w, http.StatusInternalServerError, "the snapshot failed; retry")
	}
}

// badCursor answers a cursor this endpoint did not give: 400 with a
// message that quotes nothing of it. Such refusals are the caller's doing,
// so they are logged at debug, and at most once a second.
func (h *Handler) badCursor(w http.ResponseWriter, err error) {
	h.cfg.Metrics.refused(http.StatusBadRequest)
	if n, ok := h.refusals.allow(time.Now(), time.Second); ok {
		h.cfg.Logger.Debug("snapshot: a cursor refused", "err", err, "refused_since_last_log", n)
	}
	writeError(w, http.StatusBadRequest, "the cursor is not one this endpoint gave")
}

// decodeCursor reads ?cursor=, which encodeCursor wrote.
func decodeCursor(s string) (cursor, bool) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(b, &c) != nil || c.Stream < 0 {
		return cursor{}, false
	}
	return c, true
}

// sometimes lets an event through at most once an interval, counting the
// ones held back.
type sometimes struct {
	mu   sync.Mutex
	last time.Time
	held int
}

// allow reports whether the event at now goes through, and how many were
// held back since the last that did.
func (s *sometimes) allow(now time.Time, every time.Duration) (held int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.last.IsZero() && now.Sub(s.last) < every {
		s.held++
		return 0, false
	}
	held, s.last, s.held = s.held, now, 0
	return held, true
}

func encodeCursor(c cursor) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Metrics are the snapshot endpoint's Prometheus metrics. A nil *Metrics
// records nothing.
type Metrics struct {
	snapshots prometheus.Counter
	docs      prometheus.Counter
	duration  prometheus.Histogram
	refusals  *prometheus.CounterVec
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		snapshots: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "changecast", Name: "snapshots_served_total",
			Help: "Snapshot pages (and one-document reads) served."}),
		docs: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "changecast", Name: "snapshot_documents_total",
			Help: "Documents served in snapshots."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "changecast", Name: "snapshot_seconds",
			Help: "Time to serve one snapshot page.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "changecast", Name: "snapshot_refused_total",
			Help: "Snapshot requests refused, by status (401, 403, 404…)."}, []string{"status"}),
	}
	reg.MustRegister(m.snapshots, m.docs, m.duration, m.refusals)
	return m
}

func (m *Metrics) served(docs int, d time.Duration) {
	if m == nil {
		return
	}
	m.snapshots.Inc()
	m.docs.Add(float64(docs))
	m.duration.Observe(d.Seconds())
}

func (m *Metrics) refused(status int) {
	if m != nil {
		m.refusals.WithLabelValues(strconv.Itoa(status)).Inc()
	}
}

var _ http.Handler = (*Handler)(nil)
