package history

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync"
	"time"
)

// Memory is the single-process store: histories live as long as the
// process, bounded per stream (Limits.MaxMessages, MaxAge) and in all
// (Limits.MaxBytes, oldest first). Every stream's epoch starts with the
// process's, so a restart is a new epoch. Safe for concurrent use.
type Memory struct {
	lim   Limits
	now   func() time.Time
	epoch string // this process's

	mu      sync.Mutex
	streams map[string]*memStream
	fifo    []memRef // every entry, in append (and so age) order
	head    int      // fifo[head:] are live refs (some may be trimmed already)
	bytes   int64
	created uint64
}

type memStream struct {
	epoch   string
	last    uint64 // offset of the last append
	first   uint64 // offset of entries[0]
	entries []memEntry
	touched time.Time
}

type memEntry struct {
	payload []byte
	at      time.Time
}

type memRef struct {
	s      *memStream
	offset uint64
	at     time.Time
}

// NewMemory returns an empty store.
func NewMemory(lim Limits) *Memory {
	lim.defaults()
	var b [6]byte
	rand.Read(b[:])
	return &Memory{lim: lim, now: time.Now, epoch: hex.EncodeToString(b[:]), streams: map[string]*memStream{}}
}

// stream returns stream's record, creating it (a new epoch) if missing.
func (m *Memory) stream(name string, now time.Time) *memStream {
	s := m.streams[name]
	if s == nil {
		m.created++
		s = &memStream{epoch: m.epoch + "-" + strconv.FormatUint(m.created, 36), first: 1}
		m.streams[name] = s
	}
	s.touched = now
	return s
}

// Append implements Store.
func (m *Memory) Append(_ context.Context, stream string, head, tail []byte) (Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	s := m.stream(stream, now)
	s.last++
	p := assemble(head, tail, s.epoch, s.last)
	s.entries = append(s.entries, memEntry{payload: p, at: now})
	m.fifo = append(m.fifo, memRef{s: s, offset: s.last, at: now})
	m.bytes += int64(len(p))
	for len(s.entries) > m.lim.MaxMessages {
		m.dropFirst(s)
	}
	m.trim(now)
	return Entry{Epoch: s.epoch, Offset: s.last, Payload: p}, nil
}

// dropFirst removes a stream's oldest entry.
func (m *Memory) dropFirst(s *memStream) {
	m.bytes -= int64(len(s.entries[0].payload))
	s.entries[0] = memEntry{}
	s.entries = s.entries[1:]
	s.first++
}

// trim drops what is older than MaxAge or over MaxBytes, oldest first, and
// forgets streams that are empty and untouched for MaxAge (a later append
// starts them again in a new epoch).
func (m *Memory) trim(now time.Time) {
	cutoff := now.Add(-m.lim.MaxAge)
	for m.head < len(m.fifo) {
		r := m.fifo[m.head]
		if !r.at.Before(cutoff) && m.bytes <= m.lim.MaxBytes {
			break
		}
		if len(r.s.entries) > 0 && r.s.first == r.offset {
			m.dropFirst(r.s)
		}
		m.fifo[m.head] = memRef{}
		m.head++
	}
	if m.head > 1024 && m.head*2 > len(m.fifo) {
		n := copy(m.fifo, m.fifo[m.head:])
		m.fifo = m.fifo[:n]
		m.head = 0
	}
	if len(m.streams) > 1024 {
		for name, s := range m.streams {
			if len(s.entries) == 0 && s.touched.Before(cutoff) {
				delete(m.streams, name)
			}
		}
	}
}

// Read implements Store.
func (m *Memory) Read(_ context.Context, stream, epoch string, after uint64, limit int) ([][]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.trim(now)
	s := m.stream(stream, now)
	switch {
	case s.epoch != epoch, after > s.last:
		return nil, false, &ResyncError{Epoch: s.epoch}
	case after == s.last:
		return nil, false, nil
	case after+1 < s.first:
		return nil, false, &ResyncError{Epoch: s.epoch}
	}
	from := int(after + 1 - s.first)
	to := len(s.entries)
	more := false
	if limit > 0 && to-from > limit {
		to, more = from+limit, true
	}
	out := make([][]byte, 0, to-from)
	for _, e := range s.entries[from:to] {
		out = append(out, e.payload)
	}
	return out, more, nil
}

// Last implements Store.
func (m *Memory) Last(_ context.Context, stream string) (string, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.stream(stream, m.now())
	return s.epoch, s.last, nil
}

// Renew implements Renewer: a new process epoch, and every stream emptied
// in it.
func (m *Memory) Renew(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b [6]byte
	rand.Read(b[:])
	m.epoch = hex.EncodeToString(b[:])
	names := make([]string, 0, len(m.streams))
	for name := range m.streams {
		names = append(names, name)
	}
	m.streams = map[string]*memStream{}
	m.fifo, m.head, m.bytes = nil, 0, 0
	for _, name := range names {
		m.stream(name, m.now())
	}
	return names, nil
}
