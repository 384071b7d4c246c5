package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/changecast/changecast/publish"
)

// handlerTransport is an http.RoundTripper that runs the hub's own handler:
// the REST client code that targets Azure, without a network hop.
type handlerTransport struct{ s *Server }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	r := req.Clone(req.Context())
	r.RequestURI = req.URL.RequestURI()
	r.RemoteAddr = "in-process:0"
	if r.Host == "" {
		r.Host = req.URL.Host
	}
	if r.Body == nil {
		r.Body = http.NoBody
	}
	rec := &recorder{header: http.Header{}}
	t.s.handler.ServeHTTP(rec, r)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return &http.Response{
		Status: strconv.Itoa(rec.status) + " " + http.StatusText(rec.status), StatusCode: rec.status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: rec.header, Body: io.NopCloser(&rec.body), ContentLength: int64(rec.body.Len()), Request: req,
	}, nil
}

// recorder is the ResponseWriter of an in-process call.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}

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
	case t.Method == "":
		return publish.Permanent(fmt.Errorf("hub: publish to %s: no method", t))
	case t.Group != "" && !validGroup(t.Group):
		return publish.Permanent(fmt.Errorf("hub: publish to %s: invalid group name", t))
	case !json.Valid(b.Payload):
		// A broken payload would corrupt the record stream of every client.
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
	p.s.deliver(hubKey(t.Hub), sc, frame)
	return nil
}
