package publish

import "container/list"

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
	doc      any
	size     int // its encoded length
	v        string
	audience Audience
	// loaded: read from the ShadowStore, not sent by this mapper.
	loaded bool
}

// shadow is a bounded LRU of last-published documents. It is used only from
// the processor's loop, so it has no lock.
type shadow struct {
	max int
	ll  *list.List
	m   map[shadowKey]*list.Element
}

type shadowItem struct {
	key shadowKey
	e   shadowEntry
}

func newShadow(max int) *shadow {
	return &shadow{max: max, ll: list.New(), m: make(map[shadowKey]*list.Element)}
}

func (s *shadow) get(k shadowKey) (shadowEntry, bool) {
	if el, ok := s.m[k]; ok {
		s.ll.MoveToFront(el)
		return el.Value.(*shadowItem).e, true
	}
	return shadowEntry{}, false
}

func (s *shadow) put(k shadowKey, e shadowEntry) {
	if s.max <= 0 {
		return
	}
	if el, ok := s.m[k]; ok {
		el.Value.(*shadowItem).e = e
		s.ll.MoveToFront(el)
		return
	}
	s.m[k] = s.ll.PushFront(&shadowItem{key: k, e: e})
	for s.ll.Len() > s.max {
		old := s.ll.Back()
		s.ll.Remove(old)
		delete(s.m, old.Value.(*shadowItem).key)
	}
}

func (s *shadow) del(k shadowKey) {
	if el, ok := s.m[k]; ok {
		s.ll.Remove(el)
		delete(s.m, k)
	}
}

// dropRule forgets every document of one mapping (after a truncate).
func (s *shadow) dropRule(rule int) {
	for k, el := range s.m {
		if k.rule == rule {
			s.ll.Remove(el)
			delete(s.m, k)
		}
	}
}
