// Package replica is a client-side replica of what changecast publishes: it
// applies envelopes (and snapshot documents) the way a careful client does,
// with the version rules of the wire contract (a patch from pv to v applies
// onto a document held at w with pv <= w < v; skip what is older; refetch
// on a gap). Tests use it to check that the stream reproduces the source
// exactly.
package replica

import (
	"encoding/json"
	"fmt"
	"sync"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/changecast/changecast/schema/wire"
)

type entry struct {
	doc json.RawMessage
	v   string
}

// Replica holds, per audience (group, user or the whole hub), the documents
// it received. It is safe for concurrent use.
type Replica struct {
	mu        sync.Mutex
	docs      map[string]map[string]*entry // audience → collection/id → doc
	tombs     map[string]string            // audience|collection/id → version of its last delete there
	truncated map[string]string            // collection → version of its last truncate
	// dirty: collection/id the client would have to refetch, with the
	// version it must reach; a later upsert or delete at or past it
	// settles it (a client that defers its refetches never makes those).
	dirty map[string]string
	Stats Stats
}

// Stats counts what happened while applying.
type Stats struct {
	Changes, Upserts, Patches, Deletes, Refetches, Truncates, Duplicates, Gaps int
}

// New returns an empty replica.
func New() *Replica {
	return &Replica{docs: map[string]map[string]*entry{}, tombs: map[string]string{}, truncated: map[string]string{}, dirty: map[string]string{}}
}

// Audience names where an envelope was sent.
func Audience(env *wire.Envelope) string {
	switch {
	case env.Group != "":
		return "group:" + env.Group
	case env.User != "":
		return "user:" + env.User
	}
	return "hub"
}

// ApplyJSON applies one encoded envelope.
func (r *Replica) ApplyJSON(b []byte) error {
	var env wire.Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return fmt.Errorf("envelope: %w", err)
	}
	return r.Apply(&env)
}

// Apply applies one envelope's changes in order.
func (r *Replica) Apply(env *wire.Envelope) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	aud := Audience(env)
	docs := r.docs[aud]
	if docs == nil {
		docs = map[string]*entry{}
		r.docs[aud] = docs
	}
	for _, c := range env.Changes {
		r.Stats.Changes++
		k := c.Collection + "/" + c.ID
		tk := aud + "|" + k // a move between groups deletes and inserts with one version
		cur := docs[k]
		older := func() bool {
			if cur != nil && wire.CompareVersions(c.V, cur.v) <= 0 {
				return true
			}
			if t, ok := r.tombs[tk]; ok && wire.CompareVersions(c.V, t) <= 0 {
				return true
			}
			if t, ok := r.truncated[c.Collection]; ok && wire.CompareVersions(c.V, t) <= 0 {
				return true
			}
			return false
		}
		switch c.Op {
		case wire.OpUpsert:
			if older() {
				r.Stats.Duplicates++
				continue
			}
			r.Stats.Upserts++
			docs[k] = &entry{doc: c.Doc, v: c.V}
			r.settle(k, c.V)
		case wire.OpPatch:
			// The document at w is the document after its last change at
			// or before w: with pv <= w < v no change lies between pv and
			// v, so its content at w is its content at pv.
			if cur != nil && wire.CompareVersions(c.PV, cur.v) <= 0 && wire.CompareVersions(cur.v, c.V) < 0 {
				nd, err := jsonpatch.DecodePatch(c.Patch)
				if err != nil {
					return fmt.Errorf("%s v%s: bad patch: %w", k, c.V, err)
				}
				doc, err := nd.Apply(cur.doc)
				if err != nil {
					return fmt.Errorf("%s v%s: patch does not apply to v%s (held at v%s): %w", k, c.V, c.PV, cur.v, err)
				}
				r.Stats.Patches++
				docs[k] = &entry{doc: doc, v: c.V}
				continue
			}
			if older() {
				r.Stats.Duplicates++
				continue
			}
			// A gap: the client does not hold pv; it would refetch.
			r.Stats.Gaps++
			r.mark(k, c.V)
		case wire.OpDelete:
			if cur != nil && wire.CompareVersions(c.V, cur.v) < 0 {
				r.Stats.Duplicates++
				continue
			}
			r.Stats.Deletes++
			delete(docs, k)
			r.settle(k, c.V)
			if t, ok := r.tombs[tk]; !ok || wire.CompareVersions(c.V, t) > 0 {
				r.tombs[tk] = c.V
			}
		case wire.OpRefetch:
			r.Stats.Refetches++
			r.mark(k, c.V)
		case wire.OpTruncate:
			r.Stats.Truncates++
			if t, ok := r.truncated[c.Collection]; ok && wire.CompareVersions(c.V, t) <= 0 {
				continue
			}
			r.truncated[c.Collection] = c.V
			for _, ds := range r.docs {
				for dk, e := range ds {
					if len(dk) > len(c.Collection) && dk[:len(c.Collection)+1] == c.Collection+"/" && wire.CompareVersions(e.v, c.V) < 0 {
						delete(ds, dk)
					}
				}
			}
		default:
			return fmt.Errorf("%s: unknown op %q", k, c.Op)
		}
	}
	return nil
}

// Load stores a document read from a snapshot at version v for audience
// (as Audience names it), unless the replica holds it, its delete or its
// collection's truncate at v or newer. A nil doc is a snapshot's news that
// the document is gone at v: recorded as a delete. It reports whether it
// stored it.
func (r *Replica) Load(audience, collection, id string, doc json.RawMessage, v string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	docs := r.docs[audience]
	if docs == nil {
		docs = map[string]*entry{}
		r.docs[audience] = docs
	}
	k := collection + "/" + id
	if cur := docs[k]; cur != nil && wire.CompareVersions(v, cur.v) <= 0 {
		return false
	}
	if t, ok := r.tombs[audience+"|"+k]; ok && wire.CompareVersions(v, t) <= 0 {
		return false
	}
	if t, ok := r.truncated[collection]; ok && wire.CompareVersions(v, t) <= 0 {
		return false
	}
	r.settle(k, v)
	if doc == nil {
		delete(docs, k)
		r.tombs[audience+"|"+k] = v
		return true
	}
	docs[k] = &entry{doc: doc, v: v}
	return true
}

func (r *Replica) mark(k, v string) {
	if cur, ok := r.dirty[k]; !ok || wire.CompareVersions(v, cur) > 0 {
		r.dirty[k] = v
	}
}

// settle clears a refetch that a change at v makes unneeded.
func (r *Replica) settle(k, v string) {
	if want, ok := r.dirty[k]; ok && wire.CompareVersions(v, want) >= 0 {
		delete(r.dirty, k)
	}
}

// Doc is one replicated document.
type Doc struct {
	Audience string
	Doc      json.RawMessage
	V        string
}

// Snapshot returns every document by collection/id, with the audiences
// that hold it, and the ids the client would have to refetch.
func (r *Replica) Snapshot() (docs map[string][]Doc, dirty map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	docs = map[string][]Doc{}
	for aud, ds := range r.docs {
		for k, e := range ds {
			docs[k] = append(docs[k], Doc{Audience: aud, Doc: e.doc, V: e.v})
		}
	}
	dirty = map[string]bool{}
	for k := range r.dirty {
		dirty[k] = true
	}
	return docs, dirty
}

// Counts returns a copy of the stats.
func (r *Replica) Counts() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Stats
}
