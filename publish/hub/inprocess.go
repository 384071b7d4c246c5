package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/changecast/changecast/publish"
)

// Publisher returns the in-process publisher of the hub: the contract of
// publish.Publisher with no HTTP hop. Publish returns once the batch is
// queued for every client of its target; a client whose queue is full is
// disconnected rather than slowing the publisher.
func (s *Server) Publisher() publish.Publisher { return inprocPublisher{s} }

type inprocPublisher struct{ s *Server }

func (p inprocPublisher) Publish(ctx context.Context, b *publish.Batch) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t := b.Audience
	switch {
	case !validHub(t.Hub):
		return publish.Permanent(fmt.Errorf("hub: publish to %s: invalid hub name", t))
	case !p.s.reg.served(t.Hub):
		return publish.Permanent(fmt.Errorf("hub: publish to %s: the hub is not served (see Config.Hubs)", t))
	case t.Method == "":
		return publish.Permanent(fmt.Errorf("hub: publish to %s: no method", t))
	case t.Group != "" && !validGroup(t.Group):
		return publish.Permanent(fmt.Errorf("hub: publish to %s: invalid group name", t))
	case !b.Encoded && !json.Valid(b.Payload):
		// A broken payload would corrupt the record stream of every client;
		// the pipeline's own batches are valid by construction.
		return publish.Permanent(errors.New("hub: publish: payload is not valid JSON"))
	}
	frame := appendInvocation(nil, t.Method, []json.RawMessage{b.Payload})
	// The same limit as the REST API, so a batch that works here also works
	// on Azure SignalR.
	if len(frame) > p.s.o.maxBodyBytes {
		return publish.TooLarge(fmt.Errorf("hub: publish to %s: %d bytes is over the %d-byte limit", t, len(frame), p.s.o.maxBodyBytes))
	}
	sc := scope{kind: scopeAll}
	switch {
	case t.Group != "":
		sc = scope{kind: scopeGroup, name: t.Group}
	case t.User != "":
		sc = scope{kind: scopeUser, name: t.User}
	}
	o := newOutbound(t.Method, []json.RawMessage{b.Payload})
	o.jsonB = frame
	if err := p.s.deliver(ctx, hubKey(t.Hub), sc, o); err != nil {
		// The local clients have it; the other nodes may not. Sending it
		// again is what at-least-once allows (clients dedupe by version).
		return publish.Retryable(err, 0)
	}
	return nil
}
