// Package history keeps, per stream, the envelopes sent to it, so that a
// client that was away catches up instead of reloading: every envelope gets
// its stream's epoch and the next offset when it is appended, before it is
// sent, and {negotiate.path}/changes returns the envelopes after an offset.
//
// A stream is one audience: hub and group, hub and user, or the whole hub.
// Offsets are contiguous per stream within an epoch; a new epoch means the
// history was lost (a memory store restarted, Redis flushed) and clients
// reload from a snapshot.
//
// Start from Publisher: it wraps the publisher a pipeline sends to
// (NewPublisher(store, next)) and appends each batch to its stream, once
// (retries keep the offset). Stores: NewMemory (one process, the default)
// and NewRedis (several workers, restarts and lease takeovers keep one
// history per stream). Handler serves the changes endpoint.
package history

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"time"

	"github.com/changecast/changecast/publish"
)

// Stream names a stream: "hub", "hub/g/group" or "hub/u/user".
func Stream(a publish.Audience) string {
	switch {
	case a.Group != "":
		return a.Hub + "/g/" + a.Group
	case a.User != "":
		return a.Hub + "/u/" + a.User
	}
	return a.Hub
}

// Store keeps the histories.
type Store interface {
	// Append gives the next offset of stream to the envelope made of head
	// and tail (an envelope's JSON split before its "changes" member: head
	// is `{"source":…,"hub":…[,"group"|"user":…]`, tail `,"changes":[…]}`),
	// stores head + `,"epoch":E,"offset":N` + tail, and returns it, in one
	// atomic step.
	Append(ctx context.Context, stream string, head, tail []byte) (Entry, error)
	// Read returns the envelopes of stream with offsets after `after`,
	// oldest first, at most limit, and whether more follow. It fails with
	// a *ResyncError when epoch is not the stream's, or the history no
	// longer reaches back to after+1.
	Read(ctx context.Context, stream, epoch string, after uint64, limit int) (envs [][]byte, more bool, err error)
	// Last returns the stream's epoch and its last offset (0 when nothing
	// was appended in this epoch).
	Last(ctx context.Context, stream string) (epoch string, offset uint64, err error)
}

// Entry is an appended envelope.
type Entry struct {
	Epoch   string
	Offset  uint64
	Payload []byte
}

// ResyncError is a read the history cannot serve: the client reloads the
// stream from a snapshot. Epoch is the stream's current epoch.
type ResyncError struct{ Epoch string }

func (e *ResyncError) Error() string { return "history: resync (epoch " + e.Epoch + ")" }

// IsResync reports whether err is a *ResyncError.
func IsResync(err error) bool {
	var r *ResyncError
	return errors.As(err, &r)
}

// Limits bound a store. Zero values take the documented defaults.
type Limits struct {
	// MaxMessages bounds the envelopes kept per stream. Default 10000.
	MaxMessages int
	// MaxAge bounds how long an envelope is kept. Default 10 minutes.
	MaxAge time.Duration
	// MaxBytes bounds the memory store's envelopes in all (the oldest go
	// first). Default 64 MB.
	MaxBytes int64
}

// Defaults of Limits.
const (
	DefaultMaxMessages = 10000
	DefaultMaxAge      = 10 * time.Minute
	DefaultMaxBytes    = 64 << 20
)

func (l *Limits) defaults() {
	if l.MaxMessages <= 0 {
		l.MaxMessages = DefaultMaxMessages
	}
	if l.MaxAge <= 0 {
		l.MaxAge = DefaultMaxAge
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
}

// changesKey splits payloads before their "changes" member. A string in the
// head cannot hold it: JSON escapes the quotes.
var changesKey = []byte(`,"changes":[`)

// Publisher appends each batch to its stream's history, then sends it.
type Publisher struct {
	store Store
	next  publish.Publisher
}

// NewPublisher wraps next.
func NewPublisher(store Store, next publish.Publisher) *Publisher {
	return &Publisher{store: store, next: next}
}

// Publish implements publish.Publisher. A batch is appended once: a retry
// of the same batch keeps its offset (Envelope.Offset is set). A failed
// append is retryable: nothing is sent without its offset.
func (p *Publisher) Publish(ctx context.Context, b *publish.Batch) error {
	if b.Envelope.Offset == 0 {
		i := bytes.Index(b.Payload, changesKey)
		if i < 0 {
			return publish.Permanent(errors.New("history: the batch's payload has no changes member"))
		}
		e, err := p.store.Append(ctx, Stream(b.Audience), b.Payload[:i], b.Payload[i:])
		if err != nil {
			return publish.Retryable(err, 0)
		}
		b.Envelope.Epoch, b.Envelope.Offset, b.Payload = e.Epoch, e.Offset, e.Payload
	}
	return p.next.Publish(ctx, b)
}

// assemble writes head + epoch and offset + tail.
func assemble(head, tail []byte, epoch string, offset uint64) []byte {
	b := make([]byte, 0, len(head)+len(tail)+len(epoch)+40)
	b = append(b, head...)
	b = append(b, `,"epoch":"`...)
	b = append(b, epoch...)
	b = append(b, `","offset":`...)
	b = appendUint(b, offset)
	return append(b, tail...)
}

func appendUint(b []byte, n uint64) []byte {
	var d [20]byte
	i := len(d)
	for {
		i--
		d[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return append(b, d[i:]...)
}

// Renewer is a store that can start every stream anew (Memory, Redis).
type Renewer interface {
	// Renew starts a new epoch for every stream it keeps, with no
	// envelopes, and returns their names. A stream it no longer keeps
	// starts a new epoch when it is next appended to or read.
	Renew(ctx context.Context) ([]string, error)
}

// RenewStreams implements publish.StreamRenewer: after the source lost
// continuity (a replication slot recreated), every stream's history is
// wrong, so every stream starts a new epoch and clients reload.
func (p *Publisher) RenewStreams(ctx context.Context) ([]publish.Audience, error) {
	r, ok := p.store.(Renewer)
	if !ok {
		return nil, errors.New("history: the store cannot renew its streams")
	}
	names, err := r.Renew(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]publish.Audience, 0, len(names))
	for _, n := range names {
		out = append(out, ParseStream(n))
	}
	return out, nil
}

// ParseStream is the audience of a stream name (Stream's inverse; hub
// names hold no slash).
func ParseStream(name string) publish.Audience {
	hub, rest, ok := strings.Cut(name, "/")
	switch {
	case !ok:
		return publish.Audience{Hub: name}
	case strings.HasPrefix(rest, "g/"):
		return publish.Audience{Hub: hub, Group: rest[2:]}
	case strings.HasPrefix(rest, "u/"):
		return publish.Audience{Hub: hub, User: rest[2:]}
	}
	return publish.Audience{Hub: name}
}
