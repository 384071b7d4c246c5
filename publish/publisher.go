package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/changecast/changecast/schema/wire"
)

// Audience is where one batch goes: a whole hub, one group of it, or one
// user of it, invoking Method on the clients.
type Audience struct {
	Hub    string
	Group  string // non-empty: send to this group
	User   string // non-empty: send to this user (never with Group)
	Method string // SignalR method the clients handle, e.g. "changes"
}

func (t Audience) String() string {
	switch {
	case t.Group != "":
		return fmt.Sprintf("%s/groups/%s:%s", t.Hub, t.Group, t.Method)
	case t.User != "":
		return fmt.Sprintf("%s/users/%s:%s", t.Hub, t.User, t.Method)
	}
	return fmt.Sprintf("%s:%s", t.Hub, t.Method)
}

// Batch is one invocation: Method on Target's clients with one argument,
// the envelope. Payload is the envelope already encoded as JSON, so a
// publisher never re-encodes it.
type Batch struct {
	Audience Audience
	Envelope wire.Envelope
	Payload  json.RawMessage
	// Encoded: Payload was written by this package's encoders (BuildBatch,
	// NewBatch), which only write valid JSON, so an in-process target need
	// not check it again (a visible share of the hub's CPU in profiles).
	// Code that edits Payload keeps it valid or clears this.
	Encoded bool
}

// NewBatch encodes env into a Batch for t.
func NewBatch(t Audience, env wire.Envelope) (*Batch, error) {
	p, err := json.Marshal(env)
	if err != nil {
		return nil, err
	}
	return &Batch{Audience: t, Envelope: env, Payload: p, Encoded: true}, nil
}

// Publisher delivers batches. Publish returns nil only once the target has
// accepted the batch; only then are its changes acknowledged. Errors are
// classified by behaviour: see RetryAfter, IsTooLarge and IsPermanent. An
// unclassified error is treated as retryable.
type Publisher interface {
	Publish(ctx context.Context, b *Batch) error
}

// PublisherFunc adapts a function to Publisher.
type PublisherFunc func(ctx context.Context, b *Batch) error

func (f PublisherFunc) Publish(ctx context.Context, b *Batch) error { return f(ctx, b) }

type retryableError struct {
	err   error
	after time.Duration
}

func (e *retryableError) Error() string             { return e.err.Error() }
func (e *retryableError) Unwrap() error             { return e.err }
func (e *retryableError) RetryAfter() time.Duration { return e.after }

// Retryable marks err as worth retrying, after at least `after` (0: the
// caller's own backoff).
func Retryable(err error, after time.Duration) error {
	return &retryableError{err: err, after: after}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string   { return e.err.Error() }
func (e *permanentError) Unwrap() error   { return e.err }
func (e *permanentError) Permanent() bool { return true }

// Permanent marks err as one that a retry of the same batch cannot fix.
func Permanent(err error) error { return &permanentError{err} }

type tooLargeError struct{ err error }

func (e *tooLargeError) Error() string   { return e.err.Error() }
func (e *tooLargeError) Unwrap() error   { return e.err }
func (e *tooLargeError) TooLarge() bool  { return true }
func (e *tooLargeError) Permanent() bool { return true }

// TooLarge marks err as "the batch is over the target's size limit": the
// caller splits it (and a single change becomes a refetch marker).
func TooLarge(err error) error { return &tooLargeError{err} }

// RetryAfter reports whether err is retryable and the least wait the target
// asked for.
func RetryAfter(err error) (time.Duration, bool) {
	var r interface{ RetryAfter() time.Duration }
	if errors.As(err, &r) {
		return r.RetryAfter(), true
	}
	return 0, !IsPermanent(err)
}

// IsPermanent reports whether err says a retry cannot succeed.
func IsPermanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// IsTooLarge reports whether err says the batch was over the size limit.
func IsTooLarge(err error) bool {
	var t interface{ TooLarge() bool }
	return errors.As(err, &t) && t.TooLarge()
}
