package signalr

import (
	"context"
	"encoding/json"

	"github.com/changecast/changecast/publish"
)

// Publisher is a publish.Publisher over the REST API: one call per batch,
// to the hub, group or user of the batch's Target.
//
// It does not retry. Each failure comes back classified (see Client), and
// the caller, which owns ordering per target and sees shutdown, decides
// when to try again: publish.RetryAfter gives the wait the service asked for.
// Retrying here as well would hide a stuck target from the caller's metrics
// and multiply the caller's own backoff.
type Publisher struct {
	c *Client
}

var _ publish.Publisher = (*Publisher)(nil)

// New parses connString and returns a Publisher for it.
func New(connString string, opts ...Option) (*Publisher, error) {
	c, err := NewClient(connString, opts...)
	if err != nil {
		return nil, err
	}
	return &Publisher{c: c}, nil
}

// NewPublisher returns a Publisher sending through c.
func NewPublisher(c *Client) *Publisher { return &Publisher{c: c} }

// Client is the REST client behind p (group management, client tokens).
func (p *Publisher) Client() *Client { return p.c }

// Publish sends b.Payload as the single argument of b.Target.Method.
func (p *Publisher) Publish(ctx context.Context, b *publish.Batch) error {
	return p.c.Send(ctx, b.Audience, json.RawMessage(b.Payload))
}
