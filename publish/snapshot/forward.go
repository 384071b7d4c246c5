package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// ForwardedHeader marks a request one worker forwarded to another. A
// worker never forwards such a request again, so two standbys cannot send
// a request back and forth. Anyone may set it: it only keeps the request
// on the worker it reached, which then answers 503 if it cannot read.
const ForwardedHeader = "X-Changecast-Forwarded"

// errForwarded: the request came from a peer, which logs why it failed.
var errForwarded = errors.New("forwarded by another worker; not forwarded again")

// DefaultPeerTimeout bounds a forwarded request (all peers tried).
const DefaultPeerTimeout = 10 * time.Second

// Peers forwards a snapshot request this worker cannot answer (its source
// said changefeed.ErrNotStreaming: a PostgreSQL standby reads no snapshot
// beside a stream it does not have) to the other workers, and relays the
// first answer that is not a 503.
//
// The request goes with the caller's own headers (Authorization, cookies):
// the peer authorizes the caller exactly as this worker did, so
// authorization is unchanged and no trust between workers is needed. The
// peer that answered last is asked first next time: it is the one that
// streams until a failover.
type Peers struct {
	// URLs are the peers' hub endpoints, scheme://host:port. An http
	// endpoint whose host name resolves to several addresses (a
	// Kubernetes headless Service) stands for each of them.
	URLs []string
	// Timeout bounds the whole forward (every peer tried, the answer
	// relayed). Default DefaultPeerTimeout.
	Timeout time.Duration
	// Client does the requests. Default: a client without redirects.
	Client *http.Client
	// LookupHost resolves host names. Default net.DefaultResolver's.
	LookupHost func(ctx context.Context, host string) ([]string, error)

	last   atomic.Pointer[string] // the endpoint that answered last
	logged atomic.Int64           // unix nanoseconds of the last WARN
}

// hopHeaders are the connection's own headers, not the request's
// (RFC 9110 §7.6.1); they are not forwarded.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// relayedHeaders are the answer's headers relayed to the caller.
var relayedHeaders = []string{"Content-Type", "Content-Length", "Content-Encoding", "Vary", "Cache-Control", "Retry-After", "WWW-Authenticate"}

// forward tries the peers for r and relays the first answer that is not a
// 503. It reports false, with why, when none answered: the caller then
// answers 503 itself.
func (p *Peers) forward(w http.ResponseWriter, r *http.Request) (bool, error) {
	if p == nil || len(p.URLs) == 0 {
		return false, errors.New("no hub.peers to forward to")
	}
	if r.Header.Get(ForwardedHeader) != "" {
		return false, errForwarded
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultPeerTimeout
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	client := p.Client
	if client == nil {
		client = noRedirects
	}
	var why []string
	targets := p.targets(ctx)
	last := ""
	if l := p.last.Load(); l != nil {
		last = *l
	}
	for _, target := range preferring(targets, last) {
		resp, err := p.ask(ctx, client, target, r)
		if err != nil {
			why = append(why, fmt.Sprintf("%s: %v", target, err))
			continue
		}
		if resp.StatusCode == http.StatusServiceUnavailable {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			why = append(why, target+": 503 (not streaming either)")
			continue
		}
		p.last.Store(&target)
		for _, k := range relayedHeaders {
			if v := resp.Header.Values(k); len(v) > 0 {
				w.Header()[k] = v
			}
		}
		w.WriteHeader(resp.StatusCode)
		_, err = io.Copy(w, resp.Body)
		resp.Body.Close()
		if err != nil && r.Context().Err() == nil {
			// Headers are out: the caller sees a short body and retries.
			return true, fmt.Errorf("%s: relaying the answer: %w", target, err)
		}
		return true, nil
	}
	return false, errors.New(strings.Join(why, "; "))
}

// targets are the endpoints to ask: each of URLs, an http one whose host
// is a name once per address it resolves to (a name that does not resolve
// is asked as it is, and fails there, saying why).
func (p *Peers) targets(ctx context.Context) (out []string) {
	lookup := p.LookupHost
	if lookup == nil {
		lookup = net.DefaultResolver.LookupHost
	}
	for _, base := range p.URLs {
		u, err := url.Parse(strings.TrimSuffix(base, "/"))
		if err != nil || u.Scheme != "http" || net.ParseIP(u.Hostname()) != nil {
			// https keeps its name: the certificate is checked against it.
			out = append(out, strings.TrimSuffix(base, "/"))
			continue
		}
		addrs, err := lookup(ctx, u.Hostname())
		if err != nil || len(addrs) == 0 {
			out = append(out, u.String())
			continue
		}
		port := u.Port()
		if port == "" {
			port = "80"
		}
		for _, a := range addrs {
			v := *u
			v.Host = net.JoinHostPort(a, port)
			out = append(out, v.String())
		}
	}
	return out
}

// preferring puts last first (the peer that answered last streams, until
// a failover), keeping the others in order.
func preferring(targets []string, last string) []string {
	i := slices.Index(targets, last)
	if i <= 0 {
		return targets
	}
	out := make([]string, 0, len(targets))
	out = append(out, targets[i])
	out = append(out, targets[:i]...)
	return append(out, targets[i+1:]...)
}

// ask sends r's GET to the peer at base.
func (p *Peers) ask(ctx context.Context, client *http.Client, base string, r *http.Request) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+r.URL.RequestURI(), nil)
	if err != nil {
		return nil, err
	}
	req.Header = r.Header.Clone()
	for _, k := range hopHeaders {
		req.Header.Del(k)
	}
	req.Header.Set(ForwardedHeader, "1")
	return client.Do(req)
}

var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// Forwarder serves what a node cannot answer itself — a stand-alone hub
// node (`changecast hub`) has neither a source nor a history — by asking
// Peers (the workers), after letting the caller in as they would: mount it
// at GET {negotiate.path}/snapshot and /changes.
type Forwarder struct {
	Auth   Authorizer // required
	Peers  *Peers     // required
	Logger *slog.Logger
}

// ServeHTTP implements http.Handler.
func (f *Forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, err := f.Auth.Authorize(r, r.URL.Query().Get("hub")); err != nil {
		f.Auth.Refuse(w, err)
		return
	}
	log := f.Logger
	if log == nil {
		log = slog.Default()
	}
	f.Peers.serve(w, r, log)
}

// serve relays a peer's answer to r, or answers 503 with Retry-After and
// says why.
func (p *Peers) serve(w http.ResponseWriter, r *http.Request, log *slog.Logger) {
	relayed, err := p.forward(w, r)
	switch {
	case relayed && err != nil:
		log.Warn("forward: an answer was cut short", "err", err)
	case relayed:
	default:
		p.logFailure(log, err)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "no worker can answer now; retry")
	}
}

// logEvery bounds the WARNs of a worker that cannot answer: during a
// failover every client retries every second.
const logEvery = 5 * time.Second

// logFailure says why this worker answers 503, at most once per logEvery.
func (p *Peers) logFailure(log *slog.Logger, err error) {
	if errors.Is(err, errForwarded) {
		return // the worker that forwarded it says why
	}
	now := time.Now().UnixNano()
	prev := p.logged.Load()
	if now-prev < int64(logEvery) || !p.logged.CompareAndSwap(prev, now) {
		return
	}
	log.Warn("forward: this node cannot answer now (it does not stream the feed) and no peer did; 503 (retry)", "why", err)
}
