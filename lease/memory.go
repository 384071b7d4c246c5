package lease

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MemoryStore is a Store in process memory: the single-node default, and
// the store for tests. Leases do not survive the process. Safe for
// concurrent use.
type MemoryStore struct {
	mu     sync.Mutex
	leases map[string]*Lease
	// seq numbers every write. ETags are never reused, even across a delete
	// and re-create of one id, so a stale copy can never match again.
	seq uint64
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{leases: map[string]*Lease{}}
}

var _ Store = (*MemoryStore)(nil)

func memNow() time.Time { return time.Now().UTC().Round(0) }

// stamp records a write of l at now and returns the caller's copy.
func (s *MemoryStore) stamp(l *Lease, now time.Time) *Lease {
	s.seq++
	l.ETag = strconv.FormatUint(s.seq, 10)
	l.Timestamp = now
	l.ReadAt = now
	s.leases[l.ID] = l
	return l.Clone()
}

// List implements Store.
func (s *MemoryStore) List(ctx context.Context, prefix string) ([]*Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := memNow()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Lease
	for id, l := range s.leases {
		if strings.HasPrefix(id, prefix) {
			c := l.Clone()
			c.ReadAt = now
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Create implements Store.
func (s *MemoryStore) Create(ctx context.Context, l *Lease) (*Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if l.ID == "" {
		return nil, errors.New("lease: create: empty id")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.leases[l.ID]; ok {
		return nil, &ConflictError{Op: "create", ID: l.ID, Reason: ReasonExists, Owner: cur.Owner}
	}
	return s.stamp(l.Clone(), memNow()), nil
}

// current returns the stored lease if it is still the caller's copy, or the
// error a write by op must return.
func (s *MemoryStore) current(op string, l *Lease) (*Lease, error) {
	cur, ok := s.leases[l.ID]
	switch {
	case ok && cur.ETag == l.ETag:
		return cur, nil
	case op == "acquire" || op == "delete":
		// Nothing was ours to lose.
		if !ok {
			return nil, &ConflictError{Op: op, ID: l.ID, Reason: ReasonGone}
		}
		return nil, &ConflictError{Op: op, ID: l.ID, Reason: ReasonChanged, Owner: cur.Owner}
	case !ok:
		return nil, &LostError{Op: op, ID: l.ID, Gone: true}
	case cur.Owner != l.Owner:
		return nil, &LostError{Op: op, ID: l.ID, Owner: cur.Owner}
	}
	return nil, &ConflictError{Op: op, ID: l.ID, Reason: ReasonChanged, Owner: cur.Owner}
}

// Acquire implements Store.
func (s *MemoryStore) Acquire(ctx context.Context, l *Lease, owner string, opts AcquireOptions) (*Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if owner == "" {
		return nil, errors.New("lease: acquire: empty owner")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.current("acquire", l)
	if err != nil {
		return nil, err
	}
	now := memNow()
	if !opts.Steal && cur.Owner != "" && cur.Owner != owner && now.Sub(cur.Timestamp) <= opts.ExpiryOrDefault() {
		return nil, &ConflictError{Op: "acquire", ID: l.ID, Reason: ReasonOwned, Owner: cur.Owner}
	}
	n := cur.Clone()
	n.Owner = owner
	return s.stamp(n, now), nil
}

// Renew implements Store.
func (s *MemoryStore) Renew(ctx context.Context, l *Lease) (*Lease, error) {
	return s.update(ctx, "renew", l, func(*Lease) {})
}

// Checkpoint implements Store.
func (s *MemoryStore) Checkpoint(ctx context.Context, l *Lease, continuation string) (*Lease, error) {
	return s.update(ctx, "checkpoint", l, func(n *Lease) { n.Continuation = continuation })
}

// Release implements Store.
func (s *MemoryStore) Release(ctx context.Context, l *Lease) error {
	_, err := s.update(ctx, "release", l, func(n *Lease) { n.Owner = "" })
	var lost *LostError
	if errors.As(err, &lost) && lost.Gone {
		return nil
	}
	return err
}

func (s *MemoryStore) update(ctx context.Context, op string, l *Lease, mutate func(*Lease)) (*Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.current(op, l)
	if err != nil {
		return nil, err
	}
	n := cur.Clone()
	mutate(n)
	return s.stamp(n, memNow()), nil
}

// Delete implements Store.
func (s *MemoryStore) Delete(ctx context.Context, l *Lease) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.leases[l.ID]; !ok {
		return nil
	}
	if _, err := s.current("delete", l); err != nil {
		return err
	}
	delete(s.leases, l.ID)
	return nil
}
