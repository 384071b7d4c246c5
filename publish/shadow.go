package publish

// shadowKey names one document as one mapping sees it.
type shadowKey struct {
	rule int
	id   string
}

// shadowEntry is the last version of a document that was handed to the
// batcher for one mapping: what the next patch is computed against, where it
// was sent (to notice routing changes) and its version (to drop replays).
type shadowEntry struct {
	// doc is the projected document as sent, decoded (maps, slices,
	// json.Number…): diffs and TOAST fills need it decoded, and keeping it
	// so saves a decode per change. It is never modified after it is stored.
	// A document seen once is kept only encoded, in raw (doc nil): a
	// decoded document is a dozen small objects the garbage collector
	// walks on every cycle, while most rows of a large table are not
	// changed again before they leave the shadow (profiling: the shadow's
	// decoded documents were a fifth of the pipeline's CPU on a 200k-row
	// stream). Once it changes again it is kept decoded.
	doc      any
	raw      []byte
	size     int // its encoded length
	v        string
	audience Audience
	// loaded: read from the ShadowStore, not sent by this mapper.
	loaded bool
}

// decoded is the document decoded (from raw when it is kept encoded).
func (e *shadowEntry) decoded() (any, error) {
	if e.doc != nil || e.raw == nil {
		return e.doc, nil
	}
	var doc any
	if err := unmarshalNumber(e.raw, &doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// shadow is a bounded LRU of last-published documents. It is used only from
// the processor's loop, so it has no lock. Its list is intrusive and, once
// full, reuses the evicted node for the new entry: a put allocates nothing
// at steady state (profiling: container/list's two allocations per put
// were a visible share of the mapper's garbage). Each mapping has its own
// map keyed by the id alone: string keys take the runtime's fast path,
// where a struct key was hashed field by field (profiling: a tenth of the
// mapper's time on a stream of cold rows).
type shadow struct {
	max  int
	n    int
	m    []map[string]*shadowNode // by rule
	head shadowNode               // sentinel: head.next is the most recent, head.prev the least
}

type shadowNode struct {
	key        shadowKey
	e          shadowEntry
	prev, next *shadowNode
}

func newShadow(max int) *shadow {
	s := &shadow{max: max}
	s.head.prev, s.head.next = &s.head, &s.head
	return s
}

func (s *shadow) unlink(n *shadowNode) {
	n.prev.next, n.next.prev = n.next, n.prev
	n.prev, n.next = nil, nil
}

func (s *shadow) pushFront(n *shadowNode) {
	n.prev, n.next = &s.head, s.head.next
	s.head.next.prev = n
	s.head.next = n
}

// find is k's node, or nil.
func (s *shadow) find(k shadowKey) *shadowNode {
	if k.rule >= len(s.m) {
		return nil
	}
	return s.m[k.rule][k.id]
}

func (s *shadow) get(k shadowKey) (shadowEntry, bool) {
	if n := s.find(k); n != nil {
		s.unlink(n)
		s.pushFront(n)
		return n.e, true
	}
	return shadowEntry{}, false
}

func (s *shadow) put(k shadowKey, e shadowEntry) {
	if s.max <= 0 {
		return
	}
	if n := s.find(k); n != nil {
		n.e = e
		s.unlink(n)
		s.pushFront(n)
		return
	}
	var n *shadowNode
	if s.n >= s.max {
		// Full: the least recent entry leaves, and its node is reused.
		n = s.head.prev
		s.unlink(n)
		delete(s.m[n.key.rule], n.key.id)
	} else {
		n = &shadowNode{}
		s.n++
	}
	for k.rule >= len(s.m) {
		s.m = append(s.m, map[string]*shadowNode{})
	}
	n.key, n.e = k, e
	s.m[k.rule][k.id] = n
	s.pushFront(n)
}

func (s *shadow) del(k shadowKey) {
	if n := s.find(k); n != nil {
		s.unlink(n)
		delete(s.m[k.rule], k.id)
		s.n--
	}
}

// dropRule forgets every document of one mapping (after a truncate).
func (s *shadow) dropRule(rule int) {
	if rule >= len(s.m) {
		return
	}
	for _, n := range s.m[rule] {
		s.unlink(n)
		s.n--
	}
	s.m[rule] = map[string]*shadowNode{}
}
