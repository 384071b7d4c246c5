package history

import (
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// A memory store lives as long as its process: a restart is a new epoch,
// and every client reloads its snapshot. With history.file, a graceful
// stop writes the histories to a file and the next start reads them back,
// so clients catch up across a restart (a deploy, the demo's restart) as
// they do across a dropped connection.
//
// The file is removed as soon as it is read: after a crash the next start
// must not resume an epoch whose later offsets were sent and then lost
// with the process (clients would take new envelopes for duplicates).
// Only a stop that saved the file keeps the epoch.

// fileMagic starts the file; a change of format changes it, and a file of
// another format is ignored (a new epoch, as without a file).
const fileMagic = "changecast history v1"

type fileImage struct {
	Magic   string
	Saved   time.Time
	Streams []fileStream
}

type fileStream struct {
	Name    string
	Epoch   string
	Last    uint64
	Entries []fileEntry // the stream's kept envelopes, offsets Last-len+1..Last
}

type fileEntry struct {
	Payload []byte
	At      time.Time
}

// write writes every stream's epoch, last offset and kept envelopes.
func (m *Memory) write(w io.Writer) error {
	m.mu.Lock()
	img := fileImage{Magic: fileMagic, Saved: m.now()}
	m.trim(img.Saved)
	for name, s := range m.streams {
		fs := fileStream{Name: name, Epoch: s.epoch, Last: s.last, Entries: make([]fileEntry, len(s.entries))}
		for i, e := range s.entries {
			fs.Entries[i] = fileEntry{Payload: e.payload, At: e.at}
		}
		img.Streams = append(img.Streams, fs)
	}
	m.mu.Unlock()
	return gob.NewEncoder(w).Encode(&img)
}

// read replaces the store's streams with those written by write (trimmed
// to the store's limits, by age from the time they were written down). A
// file of another format is an error and changes nothing.
func (m *Memory) read(r io.Reader) error {
	var img fileImage
	if err := gob.NewDecoder(r).Decode(&img); err != nil {
		return fmt.Errorf("history: reading a saved history: %w", err)
	}
	if img.Magic != fileMagic {
		return fmt.Errorf("history: a saved history of format %q, want %q", img.Magic, fileMagic)
	}
	for _, fs := range img.Streams {
		if fs.Last < uint64(len(fs.Entries)) {
			return fmt.Errorf("history: saved stream %q holds %d envelopes up to offset %d", fs.Name, len(fs.Entries), fs.Last)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.streams = make(map[string]*memStream, len(img.Streams))
	m.fifo, m.head, m.bytes = nil, 0, 0
	// The fifo is in age order across streams: merge by time.
	type ref struct {
		s   *memStream
		off uint64
		at  time.Time
	}
	var refs []ref
	for _, fs := range img.Streams {
		n := uint64(len(fs.Entries))
		s := &memStream{epoch: fs.Epoch, last: fs.Last, first: fs.Last - n + 1, touched: img.Saved}
		for i, e := range fs.Entries {
			s.entries = append(s.entries, memEntry{payload: e.Payload, at: e.At})
			refs = append(refs, ref{s, s.first + uint64(i), e.At})
			m.bytes += int64(len(e.Payload))
		}
		for len(s.entries) > m.lim.MaxMessages {
			m.dropFirst(s)
		}
		m.streams[fs.Name] = s
	}
	slices.SortStableFunc(refs, func(a, b ref) int { return a.at.Compare(b.at) })
	for _, r := range refs {
		if r.off >= r.s.first { // not dropped by MaxMessages above
			m.fifo = append(m.fifo, memRef{s: r.s, offset: r.off, at: r.at})
		}
	}
	m.trim(m.now())
	return nil
}

// SaveFile writes the store to path, atomically (a temporary file renamed
// over it), so a stop interrupted half way leaves no torn file.
func (m *Memory) SaveFile(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("history.file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := m.write(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("history.file: writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("history.file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("history.file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("history.file: %w", err)
	}
	return nil
}

// LoadFile reads what SaveFile wrote at path into the store and removes
// the file (see above why). It answers false, with no error, when there is
// no file; a file it cannot read is removed too, and the error says why
// (the store starts empty: a new epoch).
func (m *Memory) LoadFile(path string) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("history.file: %w", err)
	}
	err = m.read(f)
	f.Close()
	if rerr := os.Remove(path); rerr != nil && err == nil {
		// Kept, the file would bring this epoch back after a crash.
		err = fmt.Errorf("history.file: cannot remove %s after reading it: %w", path, rerr)
		m.mu.Lock()
		m.streams, m.fifo, m.head, m.bytes = map[string]*memStream{}, nil, 0, 0
		m.mu.Unlock()
		return false, err
	}
	return err == nil, err
}
