package hub

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxBodyBytes is the REST body limit, Azure SignalR's (1 MB).
const DefaultMaxBodyBytes = 1 << 20

// Defaults of the options.
const (
	defaultConnectTokenTTL = 15 * time.Second
	defaultSendQueueBytes  = 8 << 20
	defaultShutdownGrace   = 5 * time.Second
	defaultReadTimeout     = 30 * time.Second
	defaultIdleTimeout     = 2 * time.Minute
	defaultWriteTimeout    = time.Minute
	defaultJWKSRefetch     = time.Minute
	defaultSweepEvery      = time.Second
)

// Option configures a Server or a Negotiator.
type Option func(*options)

type options struct {
	log              *slog.Logger
	keepAlive        time.Duration
	clientTimeout    time.Duration
	handshakeTimeout time.Duration
	connectTokenTTL  time.Duration
	sendQueueBytes   int
	maxBodyBytes     int
	shutdownGrace    time.Duration
	readTimeout      time.Duration
	idleTimeout      time.Duration
	jwksClient       *http.Client
	jwksRefetch      time.Duration
	sweepEvery       time.Duration
	pollTimeout      time.Duration
	// From Config.StatefulReconnect.
	statefulBufferBytes int
	statefulWindow      time.Duration
}

func defaultOptions() options {
	return options{
		log:              slog.Default(),
		keepAlive:        defaultKeepAlive,
		clientTimeout:    defaultClientTimeout,
		handshakeTimeout: defaultHandshakeTimeout,
		connectTokenTTL:  defaultConnectTokenTTL,
		sendQueueBytes:   defaultSendQueueBytes,
		maxBodyBytes:     DefaultMaxBodyBytes,
		shutdownGrace:    defaultShutdownGrace,
		readTimeout:      defaultReadTimeout,
		idleTimeout:      defaultIdleTimeout,
		jwksClient:       &http.Client{Timeout: 10 * time.Second},
		jwksRefetch:      defaultJWKSRefetch,
		sweepEvery:       defaultSweepEvery,
		pollTimeout:      defaultPollTimeout,
	}
}

// WithPollTimeout sets how long a long poll waits for data before it
// answers empty (default 90 s, ASP.NET Core's).
func WithPollTimeout(d time.Duration) Option { return func(o *options) { o.pollTimeout = d } }

// WithLogger sets the logger (default slog.Default()). Tokens and keys are
// never logged.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithKeepAlive sets how often an idle connection gets a ping (default 15 s;
// clients drop a server silent for 30 s).
func WithKeepAlive(d time.Duration) Option { return func(o *options) { o.keepAlive = d } }

// WithClientTimeout sets how long a silent client is kept (default 30 s;
// clients ping every 15 s).
func WithClientTimeout(d time.Duration) Option { return func(o *options) { o.clientTimeout = d } }

// WithConnectTokenTTL sets how long a negotiated connection token waits for
// its WebSocket (default 15 s); later it is unknown (404).
func WithConnectTokenTTL(d time.Duration) Option { return func(o *options) { o.connectTokenTTL = d } }

// WithSendQueueBytes bounds the bytes queued for one client (default 8 MB);
// a client whose queue overflows is disconnected.
func WithSendQueueBytes(n int) Option { return func(o *options) { o.sendQueueBytes = n } }

// WithMaxBodyBytes sets the REST body limit (default DefaultMaxBodyBytes,
// as Azure); larger bodies get 413, and the in-process publisher refuses
// larger batches.
func WithMaxBodyBytes(n int) Option { return func(o *options) { o.maxBodyBytes = n } }

// WithShutdownGrace sets how long Run waits for clients to take their Close
// message before cutting them (default 5 s).
func WithShutdownGrace(d time.Duration) Option { return func(o *options) { o.shutdownGrace = d } }

// WithReadTimeout bounds the reading of one HTTP request, body included
// (default 30 s); WebSocket connections are not affected once upgraded.
func WithReadTimeout(d time.Duration) Option { return func(o *options) { o.readTimeout = d } }

// WithIdleTimeout sets how long a keep-alive HTTP connection may wait for
// its next request (default 2 min).
func WithIdleTimeout(d time.Duration) Option { return func(o *options) { o.idleTimeout = d } }

// WithJWKSClient sets the HTTP client that fetches negotiate.auth.jwt.jwksURL,
// and an authority's discovery document and keys.
func WithJWKSClient(c *http.Client) Option { return func(o *options) { o.jwksClient = c } }

// Server is the built-in hub: client endpoints, the REST API, app negotiate
// and optional static files, on one listener.
type Server struct {
	cfg     Config   // defaults applied
	pub     *url.URL // cfg.PublicURL parsed; nil when not set
	key     string
	o       options
	reg     *registry
	origins origins
	neg     *Negotiator
	handler http.Handler
	refused *logLimiter
	// transports are the enabled client transports; offered is negotiate's
	// list of them.
	transports map[transport]bool
	offered    []transportOffered
	// bp joins this node to the others; nil on a single node.
	bp *backplane

	listening     chan struct{}
	listeningOnce sync.Once
	addrMu        sync.Mutex
	addr          net.Addr

	// Connections are owned by Serve: baseCtx ends them, and wg waits for
	// their handlers (hijacked, so http.Server.Shutdown does not).
	baseCtx    context.Context
	cancelBase context.CancelFunc
	mu         sync.Mutex
	closing    bool
	wg         sync.WaitGroup
	// ticks counts keepAliveLoop's periods (from 1): a connection's
	// lastWrite is one of them.
	ticks atomic.Int64
	// restTokens are the REST access tokens verified already.
	restTokens tokenCache
}

// New builds a hub from cfg, with the defaults applied to its zero fields
// (see Config). It does not listen yet: call Run or Serve.
func New(cfg Config, opts ...Option) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := defaultOptions()
	for _, f := range opts {
		f(&o)
	}
	o.statefulBufferBytes, o.statefulWindow = cfg.StatefulReconnect.BufferBytes, cfg.StatefulReconnect.Window
	if cfg.Static != "" {
		if st, err := os.Stat(cfg.Static); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("hub: static %q is not a folder", cfg.Static)
		}
	}
	key := cfg.AccessKey
	if key == "" {
		key = NewAccessKey()
	}
	l := cfg.Limits
	s := &Server{cfg: cfg, key: key, o: o, listening: make(chan struct{}), refused: newLogLimiter(time.Second),
		reg:     newRegistry(cfg.Hubs, limits{maxConns: l.MaxConnections, maxPerUser: l.MaxConnectionsPerUser, maxGroupsPerUser: l.MaxGroupsPerUser}),
		origins: newOrigins(cfg.CORSOrigins, cfg.PublicURL)}
	if cfg.PublicURL != "" {
		s.pub, _ = parsePublicURL(cfg.PublicURL) // valid: checked above
	}
	s.ticks.Store(1)
	s.transports = map[transport]bool{}
	for _, t := range cfg.Transports {
		for _, k := range []transport{transportWebSockets, transportServerSentEvents, transportLongPolling} {
			if k.String() == t {
				s.transports[k] = true
			}
		}
	}
	s.offered = offeredTransports(cfg.Transports)
	if cfg.Backplane != nil {
		bp, err := newBackplane(*cfg.Backplane, s)
		if err != nil {
			return nil, err
		}
		s.bp = bp
	}
	s.baseCtx, s.cancelBase = context.WithCancel(context.Background())
	mux := http.NewServeMux()
	neg, err := newNegotiator(cfg, selfService{s}, o, mux)
	if err != nil {
		return nil, err
	}
	s.neg = neg
	s.handler = s.routes(mux)
	return s, nil
}

// Negotiator is the hub's app negotiate endpoint: mount more endpoints
// next to it with its Handle, and check their callers with its Authorize.
func (s *Server) Negotiator() *Negotiator { return s.neg }

// endpoint is what access tokens are issued for, and where negotiate sends
// clients: PublicURL, or else the scheme and host r arrived with.
func (s *Server) endpoint(r *http.Request) endpoint {
	if s.pub != nil {
		return endpoint{scheme: s.pub.Scheme, host: s.pub.Host}
	}
	return requestEndpoint(r)
}

// NewAccessKey returns a random access key shaped like Azure's (44 base64
// characters).
func NewAccessKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// AccessKey is the key REST callers sign tokens with.
func (s *Server) AccessKey() string { return s.key }

// Handler serves every endpoint of the hub, for mounting in another server.
// Connections it accepts are still owned by Serve or Run, which closes them
// when its ctx ends (pass a nil listener to Serve to own them only).
func (s *Server) Handler() http.Handler { return s.handler }

// Listening is closed once Run or Serve is listening (or has failed to).
func (s *Server) Listening() <-chan struct{} { return s.listening }

// Addr is the bound address once Listening is closed; nil before, or when
// serving nothing.
func (s *Server) Addr() net.Addr {
	s.addrMu.Lock()
	defer s.addrMu.Unlock()
	return s.addr
}

// Endpoint is the hub's base URL: PublicURL when configured, else for
// local callers the bound address, with a wildcard host replaced by
// 127.0.0.1 (cfg.Listen before Listening).
func (s *Server) Endpoint() string {
	if s.pub != nil {
		return s.pub.String()
	}
	hostport := s.cfg.Listen
	if a := s.Addr(); a != nil {
		hostport = a.String()
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "http://" + hostport
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// ConnectionString is an Azure-style connection string for the hub, which
// signalr.New and Azure SignalR SDKs accept. It holds the key: do not log it.
func (s *Server) ConnectionString() string {
	return "Endpoint=" + s.Endpoint() + ";AccessKey=" + s.key + ";Version=1.0;"
}

// NegotiateURL is the app negotiate URL clients start from (withUrl takes
// it without the trailing /negotiate).
func (s *Server) NegotiateURL() string {
	return s.Endpoint() + strings.TrimRight(s.cfg.Negotiate.Path, "/") + "/negotiate"
}

// Run listens on cfg.Listen and serves until ctx ends; see Serve.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		s.listeningOnce.Do(func() { close(s.listening) })
		return fmt.Errorf("hub: listen: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends, then tells every client to reconnect
// (Close with allowReconnect), waits up to the shutdown grace for them to
// go, cuts the rest and returns. With a nil ln it serves nothing itself and
// only owns the connections accepted through Handler. Serve runs once.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.bp != nil {
		// Subscribed before serving, so that no send made to another node
		// once this one answers is missed; the backplane outlives the
		// connections (they leave it as they close).
		bpErr := make(chan error, 1)
		bpCtx, stopBP := context.WithCancel(context.Background())
		go func() { bpErr <- s.bp.run(bpCtx) }()
		defer func() {
			stopBP()
			if e := <-bpErr; e != nil {
				s.o.log.Error("hub: backplane", "err", e)
			}
			s.bp.close()
		}()
		select {
		case <-s.bp.ready:
		case e := <-bpErr:
			bpErr <- nil
			s.listeningOnce.Do(func() { close(s.listening) })
			if ln != nil {
				ln.Close()
			}
			return e
		case <-ctx.Done():
		}
	}
	var srv *http.Server
	errc := make(chan error, 1)
	if ln != nil {
		s.addrMu.Lock()
		s.addr = ln.Addr()
		s.addrMu.Unlock()
		// Hijacked (WebSocket) connections lose these deadlines; every other
		// request must be read within readTimeout, and an idle keep-alive
		// connection is closed, so that idle or trickling connections
		// cannot pile up.
		srv = &http.Server{
			Handler:           s.handler,
			ReadHeaderTimeout: min(10*time.Second, s.o.readTimeout),
			ReadTimeout:       s.o.readTimeout,
			WriteTimeout:      max(defaultWriteTimeout, s.o.readTimeout),
			IdleTimeout:       s.o.idleTimeout,
			BaseContext:       func(net.Listener) context.Context { return s.baseCtx },
			ErrorLog:          slog.NewLogLogger(s.o.log.Handler(), slog.LevelDebug),
		}
		go func() { errc <- srv.Serve(ln) }()
		s.o.log.Info("hub listening", "endpoint", s.Endpoint())
	}
	s.listeningOnce.Do(func() { close(s.listening) })
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	swept := make(chan struct{})
	go func() { defer close(swept); s.sweepLoop(sweepCtx) }()
	pinged := make(chan struct{})
	go func() { defer close(pinged); s.keepAliveLoop(sweepCtx) }()
	defer func() { <-pinged }()
	defer func() { stopSweep(); <-swept }()

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("hub: serve: %w", err)
	}

	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.reg.closeAll("Server is shutting down.", true)
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), s.o.shutdownGrace)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.o.shutdownGrace):
		s.o.log.Warn("hub: clients did not close in time; cutting them")
		s.cancelBase()
		for _, c := range s.reg.liveConns() {
			c.end(errServerClosed) // a WebSocket stops this way, not by its context
		}
		<-done
	}
	s.cancelBase()
	// Connections without a transport (a long-polling client between
	// polls, a stateful one waiting to come back) end here.
	for _, c := range s.reg.liveConns() {
		c.end(errServerClosed)
		s.finish(c)
	}
	if srv != nil && err == nil {
		if e := <-errc; !errors.Is(e, http.ErrServerClosed) {
			err = e
		}
	}
	return err
}

// track registers a connection handler with Serve; false once shutting down.
func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.wg.Add(1)
	return true
}

// sweepLoop drops expired memberships, negotiated connections and
// connections every period until ctx ends: expiries are never handled on a
// request's path.
func (s *Server) sweepLoop(ctx context.Context) {
	tickLoop(ctx, s.o.sweepEvery, func(now time.Time) {
		s.reg.sweep(now)
		s.sweepConns(now)
	})
}

// sweepLoop sweeps reg alone (tests of the registry).
func sweepLoop(ctx context.Context, reg *registry, every time.Duration) {
	tickLoop(ctx, every, reg.sweep)
}

// tickLoop calls fn every period until ctx ends.
func tickLoop(ctx context.Context, every time.Duration, fn func(time.Time)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			fn(now)
		}
	}
}

// sweepConns ends the connections whose time is up (conn.expired) and
// forgets the ended ones no transport handler is left to forget.
func (s *Server) sweepConns(now time.Time) {
	for _, c := range s.reg.liveConns() {
		if err := c.expired(now, &s.o); err != nil {
			c.logger().Debug("hub: connection expired", "err", err)
			c.end(err)
		}
		s.finish(c)
	}
}

// routes adds the client endpoints, the REST API and the static folder to
// mux, which already holds the negotiate routes.
func (s *Server) routes(mux *http.ServeMux) http.Handler {
	mux.HandleFunc("POST /client/negotiate", s.clientNegotiate)
	mux.HandleFunc("GET /client/{$}", s.clientConnect)
	mux.HandleFunc("GET /client", s.clientConnect)
	mux.HandleFunc("POST /client/{$}", s.clientSend)
	mux.HandleFunc("POST /client", s.clientSend)
	mux.HandleFunc("DELETE /client/{$}", s.clientDelete)
	mux.HandleFunc("DELETE /client", s.clientDelete)
	s.restRoutes(mux)
	if s.cfg.Static != "" {
		mux.Handle("GET /", http.FileServer(http.Dir(s.cfg.Static)))
	}
	return withCORS(s.origins, mux)
}

// refuse answers a refused client or REST request with Azure SignalR's
// error body; the reason goes to the debug log, at most once a second per
// code.
func (s *Server) refuse(w http.ResponseWriter, what string, status int, code, msg string, reason error) {
	if ok, dropped := s.refused.allow(code, time.Now()); ok {
		s.o.log.Debug("hub: "+what+" refused", "status", status, "code", code, "err", reason, "suppressed", dropped)
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	writeError(w, status, code, msg)
}
