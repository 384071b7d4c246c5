package publish

import (
	"bufio"
	"context"
	"io"
	"sync"
)

// Writer is the stdout publisher: it writes one envelope per line, as JSON,
// to w (os.Stdout in `changecast run`), and flushes before acknowledging, so
// piping changecast into another program keeps at-least-once. Logs never go
// to this writer.
type Writer struct {
	mu sync.Mutex
	w  *bufio.Writer
}

// NewWriter returns a publisher writing envelopes to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: bufio.NewWriterSize(w, 64<<10)} }

// Publish writes b's envelope and a newline.
func (s *Writer) Publish(ctx context.Context, b *Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w.Write(b.Payload)
	s.w.WriteByte('\n')
	// A write error (e.g. a closed pipe) is retryable: the reader may come
	// back, and nothing is acknowledged until it does.
	if err := s.w.Flush(); err != nil {
		return Retryable(err, 0)
	}
	return nil
}
