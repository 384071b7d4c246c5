package publish

import (
	"container/list"
	"context"
	"strings"
	"sync"

	"github.com/changecast/changecast/schema/wire"
)

// MemoryShadowStore is a ShadowStore in this process's memory, bounded to
// the most recently saved documents. It matters where one process runs
// several pipelines over one collection: the Cosmos DB source runs one per
// lease, each with its own mapper, and the children of a split range (or a
// range this instance takes over from a lease it held) start with empty
// shadows. Without a store, a document whose first change after that
// moves it to another group reaches the new group only: the old group is
// never told, and its clients keep a stale copy. The store hands each new
// pipeline what the others published. It does not survive a restart, nor
// reach another instance: publish.shadowStore (pgshadow) does.
type MemoryShadowStore struct {
	mu   sync.Mutex
	max  int
	lru  *list.List // of ShadowRecord, most recently saved first
	keys map[string]*list.Element
}

// NewMemoryShadowStore keeps at most size documents (at least 1).
func NewMemoryShadowStore(size int) *MemoryShadowStore {
	return &MemoryShadowStore{max: max(size, 1), lru: list.New(), keys: map[string]*list.Element{}}
}

// Load implements ShadowStore.
func (s *MemoryShadowStore) Load(_ context.Context, key string) (ShadowRecord, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.keys[key]
	if !ok {
		return ShadowRecord{}, false, nil
	}
	return e.Value.(ShadowRecord), true, nil
}

// Save implements ShadowStore: per key the newest version wins, whatever
// the order of saves; a prefix record forgets older versions of its keys.
func (s *MemoryShadowStore) Save(_ context.Context, recs []ShadowRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		if r.Prefix {
			for k, e := range s.keys {
				if strings.HasPrefix(k, r.Key) && wire.CompareVersions(e.Value.(ShadowRecord).V, r.V) < 0 {
					s.lru.Remove(e)
					delete(s.keys, k)
				}
			}
			continue
		}
		if e, ok := s.keys[r.Key]; ok {
			if wire.CompareVersions(r.V, e.Value.(ShadowRecord).V) <= 0 {
				continue
			}
			e.Value = r
			s.lru.MoveToFront(e)
			continue
		}
		s.keys[r.Key] = s.lru.PushFront(r)
		for s.lru.Len() > s.max {
			old := s.lru.Back()
			s.lru.Remove(old)
			delete(s.keys, old.Value.(ShadowRecord).Key)
		}
	}
	return nil
}

// PassesReplays reports that the store does not decide what was delivered:
// a change at or below a version it holds goes out again when the pipeline
// that reads it did not send that version itself. In one process such a
// change is a replay someone asked for (changecast checkpoint reset --to
// beginning), while a store that outlives the process (pgshadow) skips
// replays after a crash.
func (*MemoryShadowStore) PassesReplays() bool { return true }

var _ ShadowStore = (*MemoryShadowStore)(nil)
