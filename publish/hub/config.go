package hub

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/changecast/changecast/schema/template"
)

// Defaults of Config, applied by New and NewNegotiator to fields left zero.
const (
	// DefaultListen is where Run listens.
	DefaultListen = "127.0.0.1:8080"
	// DefaultNegotiatePath is the prefix of the app negotiate endpoint,
	// which answers at DefaultNegotiatePath + "/negotiate".
	DefaultNegotiatePath = "/api"
	// DefaultUserClaim is the claim of an app token holding the user id.
	DefaultUserClaim = "sub"
	// DefaultTokenTTL is the lifetime of the client access token negotiate
	// returns (the Azure SignalR SDKs' default).
	DefaultTokenTTL = time.Hour
	// MinTokenTTL is the shortest TokenTTL accepted: a client needs time
	// to connect with its token.
	MinTokenTTL = time.Minute
	// DefaultAnonymousGroupTTL is how long the groups an anonymous
	// negotiate joined outlive it while the user is not connected.
	DefaultAnonymousGroupTTL = 5 * time.Minute
	// MinAccessKeyBytes is the shortest AccessKey accepted: it is an HMAC
	// key, and a short one can be guessed offline from any token.
	MinAccessKeyBytes = 32
	// DefaultMaxConnections bounds the hub's open client connections.
	DefaultMaxConnections = 100_000
	// DefaultMaxConnectionsPerUser bounds one user's open connections.
	DefaultMaxConnectionsPerUser = 100
	// DefaultMaxGroupsPerUser bounds one user's group memberships per hub;
	// Azure SignalR keeps the latest 100 and drops the oldest.
	DefaultMaxGroupsPerUser = 100
	// DefaultMaxClientTokenTTL is the longest lifetime accepted of a client
	// access token (exp - now).
	DefaultMaxClientTokenTTL = 24 * time.Hour
	// DefaultMaxRESTTokenTTL is the longest lifetime accepted of a REST
	// access token; the Azure SDKs sign them for an hour.
	DefaultMaxRESTTokenTTL = time.Hour
	// DefaultStatefulBufferBytes bounds what a stateful connection keeps
	// for its client while its transport is gone (the clients' default
	// buffer, 100 KB).
	DefaultStatefulBufferBytes = 100_000
	// DefaultStatefulWindow is how long a stateful connection waits for
	// its client to come back.
	DefaultStatefulWindow = 30 * time.Second
	// DefaultBackplanePrefix prefixes the backplane's Redis keys and
	// channels.
	DefaultBackplanePrefix = "changecast:hub"
)

// DefaultTransports are the client transports served, in the order
// negotiate offers them (the clients take the first they support).
var DefaultTransports = []string{TransportWebSockets, TransportServerSentEvents, TransportLongPolling}

// Config is what a Server serves. A Negotiator uses only Hubs, Negotiate,
// CORSOrigins (with PublicURL's origin) and Limits.MaxClientTokenTTL. Hubs
// and Negotiate.Auth are required; any other zero field means what its
// comment says.
type Config struct {
	// Listen is the address Run listens on. Zero: DefaultListen.
	Listen string
	// PublicURL is the hub's endpoint as clients and REST callers reach it
	// (scheme://host[:port], e.g. behind a TLS-terminating proxy): the URL
	// negotiate hands out, and the audience every access token must
	// carry. Zero: the scheme and host each request arrived with (its Host
	// header, and X-Forwarded-Proto), which suits development only.
	PublicURL string
	// AccessKey signs and verifies access tokens (HS256 over its UTF-8
	// bytes), at least MinAccessKeyBytes long; it goes into the connection
	// string, so it must hold no ';' or white space. Zero: a random key
	// (NewAccessKey), which Server.AccessKey and Server.ConnectionString
	// give.
	AccessKey string
	// Hubs are the hubs served (names are case-insensitive). Negotiate, the
	// client endpoints and the REST API answer 404 for any other hub, so
	// callers cannot make the hub keep state for names of their choosing.
	// At least one is required.
	Hubs []string
	// Negotiate configures the app negotiate endpoint.
	Negotiate NegotiateConfig
	// CORSOrigins are the browser origins (scheme://host[:port]) allowed to
	// call the hub's endpoints and to open its WebSockets; "*" allows any.
	// The Origin is echoed and credentials are allowed. Zero: loopback
	// origins only (http://localhost:3000, http://127.0.0.1:5173, …).
	// Requests without an Origin (non-browser clients) are not affected.
	CORSOrigins []string
	// Limits bound what callers can make the hub hold.
	Limits Limits
	// Static is a folder served at / (e.g. a web app). Zero: nothing is
	// served at /.
	Static string
	// Transports are the client transports served, in the order negotiate
	// offers them: TransportWebSockets, TransportServerSentEvents,
	// TransportLongPolling. Zero: DefaultTransports.
	Transports []string
	// StatefulReconnect configures stateful reconnect (handshake version
	// 2), offered to clients that ask for it.
	StatefulReconnect StatefulReconnect
	// Backplane, when set, lets several hub processes serve the same hubs
	// behind one load balancer.
	Backplane *Backplane
}

// StatefulReconnect lets a WebSocket client whose connection dropped come
// back to the same connection and get every message it missed, once.
type StatefulReconnect struct {
	// Disabled stops offering it; clients that ask get the plain protocol.
	Disabled bool
	// BufferBytes bounds the messages kept for a client whose transport is
	// gone; past it the connection ends (the client then reconnects from
	// scratch). Zero: DefaultStatefulBufferBytes.
	BufferBytes int
	// Window is how long a connection waits for its client to come back.
	// Zero: DefaultStatefulWindow.
	Window time.Duration
}

// Backplane joins hub processes through Redis: sends, group and user
// membership and existence checks reach connections on every node, and
// any node may answer negotiate.
type Backplane struct {
	// RedisURL is the Redis server, redis://[user:password@]host:port[/db]
	// (rediss:// for TLS).
	RedisURL string
	// Prefix prefixes every key and channel, so that several clusters can
	// share one Redis. Zero: DefaultBackplanePrefix.
	Prefix string
	// NodeTTL is how long a node's connections stay known after it stops
	// renewing them (a node that dies). Zero: 15 s.
	NodeTTL time.Duration
}

// Limits bound connections, memberships and token lifetimes. Zero fields
// mean their Default* constants.
type Limits struct {
	// MaxConnections bounds the open client connections, and apart from
	// them the negotiated ones waiting for their WebSocket; over it
	// negotiate answers 429 and the WebSocket upgrade 503. With a
	// Backplane each node bounds its own: the connections it holds and
	// those it negotiated (until they expire or connect to it).
	MaxConnections int
	// MaxConnectionsPerUser bounds one user id's open connections, with
	// the same answers.
	MaxConnectionsPerUser int
	// MaxGroupsPerUser bounds the groups a user belongs to in one hub; a
	// join over it drops the membership updated longest ago, as Azure
	// SignalR does.
	MaxGroupsPerUser int
	// MaxClientTokenTTL is the longest remaining lifetime accepted of a
	// client access token, and bounds Negotiate.TokenTTL and
	// :generateToken's minutesToExpire.
	MaxClientTokenTTL time.Duration
	// MaxRESTTokenTTL is the longest remaining lifetime accepted of a REST
	// access token.
	MaxRESTTokenTTL time.Duration
}

// NegotiateConfig is the app negotiate endpoint, what the Azure Functions
// SignalRConnectionInfo binding does.
type NegotiateConfig struct {
	// Path is the prefix of POST {Path}/negotiate; it starts with '/'.
	// Zero: DefaultNegotiatePath.
	Path string
	// Hub is used when a request has no ?hub= query. Zero: hub= is
	// required.
	Hub string
	// Auth says who may negotiate; it must allow someone.
	Auth NegotiateAuth
	// UserClaim is the claim holding the user id. Zero: DefaultUserClaim.
	UserClaim string
	// Groups are the groups a user joins, templates over its claims (see
	// template.ParseClaims), e.g. "tenant-{claims.tid}". A claim holding
	// an array gives one group per element; a missing claim gives none, so
	// anonymous users join only groups without claim holes. Zero: no
	// groups.
	Groups []string
	// GroupTTL bounds how long the group memberships of an authenticated
	// negotiate outlive it; every negotiate renews them. Zero: they never
	// expire (as Azure SignalR keeps user groups; Limits.MaxGroupsPerUser
	// still applies), so a connection open for days keeps its groups; a
	// TTL instead makes a user whose claims changed lose old groups at
	// most GroupTTL later, and long-open connections lose them too until
	// they reconnect.
	GroupTTL time.Duration
	// AnonymousGroupTTL is how long the groups an anonymous negotiate
	// joined are kept on the built-in hub while the (random) user has no
	// connection; a connected user keeps them. With a Service (Azure) they
	// follow GroupTTL instead, since the service drops memberships from
	// open connections too. Zero: DefaultAnonymousGroupTTL.
	AnonymousGroupTTL time.Duration
	// TokenTTL is the lifetime of the client access token negotiate
	// returns, at least MinTokenTTL and at most Limits.MaxClientTokenTTL.
	// Zero: DefaultTokenTTL.
	TokenTTL time.Duration
}

// NegotiateAuth says who may negotiate. With both Anonymous and JWT, a
// token is optional but checked when present.
type NegotiateAuth struct {
	// Anonymous lets anyone negotiate (development).
	Anonymous bool
	// JWT verifies the caller's "Authorization: Bearer" token; nil: no
	// token is looked at.
	JWT *JWTAuth
	// AppService takes the user from the headers App Service or Container
	// Apps authentication sets (X-MS-CLIENT-PRINCIPAL…), from trusted
	// proxies only.
	AppService *AppServiceAuth
	// Proxy takes the user from the headers an authenticating proxy such
	// as oauth2-proxy sets (X-Forwarded-User…), from trusted proxies only.
	Proxy *ProxyAuth
	// Webhook asks the app who the caller is.
	Webhook *WebhookAuth
}

// JWTAuth verifies app users' tokens. Exactly one of HS256Secret,
// JWKSFile, JWKSURL and Authority is set.
type JWTAuth struct {
	// HS256Secret is the shared secret of HS256 tokens (its UTF-8 bytes,
	// at least 16).
	HS256Secret string
	// JWKSFile is a file holding a JSON Web Key Set of RSA keys (RS256
	// tokens), read once by New or NewNegotiator.
	JWKSFile string
	// JWKSURL is the https URL (http only on a loopback host) of a JSON
	// Web Key Set of RSA keys (RS256 tokens), fetched on first use and
	// again on an unknown kid.
	JWKSURL string
	// Authority is an OpenID Connect issuer (https, http only on a
	// loopback host): {Authority}/.well-known/openid-configuration gives
	// the JWKS URL and the issuer tokens must carry (Issuer, when set,
	// replaces it). Keys are fetched like JWKSURL's.
	Authority string
	// Issuer is the required iss. Required with a JWKS (an identity
	// provider's keys sign tokens for every app it serves); zero with
	// HS256Secret: any.
	Issuer string
	// Audience is the required aud. Required with a JWKS, like Issuer;
	// zero with HS256Secret: any.
	Audience string
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	n := &c.Negotiate
	if n.Path == "" {
		n.Path = DefaultNegotiatePath
	}
	if n.UserClaim == "" {
		n.UserClaim = DefaultUserClaim
	}
	if n.TokenTTL == 0 {
		n.TokenTTL = DefaultTokenTTL
	}
	if n.AnonymousGroupTTL == 0 {
		n.AnonymousGroupTTL = DefaultAnonymousGroupTTL
	}
	l := &c.Limits
	setInt(&l.MaxConnections, DefaultMaxConnections)
	setInt(&l.MaxConnectionsPerUser, DefaultMaxConnectionsPerUser)
	setInt(&l.MaxGroupsPerUser, DefaultMaxGroupsPerUser)
	if l.MaxClientTokenTTL == 0 {
		l.MaxClientTokenTTL = DefaultMaxClientTokenTTL
	}
	if l.MaxRESTTokenTTL == 0 {
		l.MaxRESTTokenTTL = DefaultMaxRESTTokenTTL
	}
	if len(c.Transports) == 0 {
		c.Transports = DefaultTransports
	}
	sr := &c.StatefulReconnect
	setInt(&sr.BufferBytes, DefaultStatefulBufferBytes)
	if sr.Window == 0 {
		sr.Window = DefaultStatefulWindow
	}
	if b := c.Backplane; b != nil {
		bc := *b
		if bc.Prefix == "" {
			bc.Prefix = DefaultBackplanePrefix
		}
		if bc.NodeTTL == 0 {
			bc.NodeTTL = defaultNodeTTL
		}
		c.Backplane = &bc
	}
	return c
}

func setInt(p *int, def int) {
	if *p == 0 {
		*p = def
	}
}

// Validate reports every problem of c that can be seen without I/O (New
// also checks that Static is a folder, and reads JWKSFile). Zero fields are
// valid: they mean their defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if strings.ContainsAny(c.AccessKey, "; \t\r\n") {
		errs = append(errs, errors.New("hub: AccessKey must not contain ';' or spaces (it goes into a connection string)"))
	}
	if c.AccessKey != "" && len(c.AccessKey) < MinAccessKeyBytes {
		errs = append(errs, fmt.Errorf("hub: AccessKey is shorter than %d bytes", MinAccessKeyBytes))
	}
	if c.PublicURL != "" {
		if _, err := parsePublicURL(c.PublicURL); err != nil {
			errs = append(errs, fmt.Errorf("hub: PublicURL: %w", err))
		}
	}
	l := c.Limits
	for _, f := range []struct {
		name string
		v    int
	}{{"MaxConnections", l.MaxConnections}, {"MaxConnectionsPerUser", l.MaxConnectionsPerUser}, {"MaxGroupsPerUser", l.MaxGroupsPerUser}} {
		if f.v < 1 {
			errs = append(errs, fmt.Errorf("hub: Limits.%s must be at least 1", f.name))
		}
	}
	if l.MaxRESTTokenTTL < time.Minute {
		errs = append(errs, errors.New("hub: Limits.MaxRESTTokenTTL must be at least 1m"))
	}
	seen := map[string]bool{}
	for i, t := range c.Transports {
		switch {
		case t != TransportWebSockets && t != TransportServerSentEvents && t != TransportLongPolling:
			errs = append(errs, fmt.Errorf("hub: Transports[%d]: %q is not WebSockets, ServerSentEvents or LongPolling", i, t))
		case seen[t]:
			errs = append(errs, fmt.Errorf("hub: Transports[%d]: %q is listed twice", i, t))
		}
		seen[t] = true
	}
	if sr := c.StatefulReconnect; sr.BufferBytes < 1 || sr.Window < time.Second {
		errs = append(errs, errors.New("hub: StatefulReconnect: BufferBytes must be at least 1 and Window at least 1s"))
	}
	if b := c.Backplane; b != nil {
		if u, err := url.Parse(b.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			errs = append(errs, fmt.Errorf("hub: Backplane.RedisURL: %q is not a redis:// or rediss:// URL", redactURL(b.RedisURL)))
		}
		if c.AccessKey == "" {
			errs = append(errs, errors.New("hub: AccessKey is required with a Backplane: every node signs and checks tokens with it"))
		}
		if b.NodeTTL < 3*time.Second {
			errs = append(errs, errors.New("hub: Backplane.NodeTTL must be at least 3s"))
		}
	}
	return errors.Join(append(errs, c.validateNegotiate()...)...)
}

// parsePublicURL checks a PublicURL: http(s), a host, no path, query,
// fragment or user info.
func parsePublicURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%q is not an endpoint such as https://hub.example.com", s)
	}
	u.Path = ""
	return u, nil
}

// validateNegotiate checks what a Negotiator uses: Hubs, Negotiate,
// CORSOrigins and the client token limit, with defaults applied.
func (c Config) validateNegotiate() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("hub: "+field+": "+format, args...))
	}
	if len(c.Hubs) == 0 {
		bad("Hubs", "list at least one hub to serve")
	}
	served := map[string]bool{}
	for i, h := range c.Hubs {
		if !validHub(h) {
			bad(fmt.Sprintf("Hubs[%d]", i), "%q is not a valid hub name (a letter, then letters, digits, _`,.[])", h)
		}
		served[hubKey(h)] = true
	}
	n := c.Negotiate
	if !strings.HasPrefix(n.Path, "/") {
		bad("Negotiate.Path", "%q must start with /", n.Path)
	}
	if n.Hub != "" && !validHub(n.Hub) {
		bad("Negotiate.Hub", "%q is not a valid hub name (a letter, then letters, digits, _`,.[])", n.Hub)
	} else if n.Hub != "" && !served[hubKey(n.Hub)] {
		bad("Negotiate.Hub", "%q is not one of Hubs", n.Hub)
	}
	if a := n.Auth; !a.Anonymous && a.JWT == nil && a.AppService == nil && a.Proxy == nil && a.Webhook == nil {
		bad("Negotiate.Auth", "set Anonymous, JWT, AppService, Proxy or Webhook")
	}
	errs = append(errs, validateAuthMethods(n.Auth)...)
	if j := n.Auth.JWT; j != nil {
		set := 0
		for _, s := range []string{j.HS256Secret, j.JWKSFile, j.JWKSURL, j.Authority} {
			if s != "" {
				set++
			}
		}
		if set != 1 {
			bad("Negotiate.Auth.JWT", "set exactly one of HS256Secret, JWKSFile, JWKSURL, Authority")
		}
		if j.HS256Secret != "" && len(j.HS256Secret) < 16 {
			bad("Negotiate.Auth.JWT.HS256Secret", "is shorter than 16 bytes")
		}
		if j.JWKSURL != "" && !jwksURLOK(j.JWKSURL) {
			bad("Negotiate.Auth.JWT.JWKSURL", "%q is not an https URL (http only on a loopback host)", j.JWKSURL)
		}
		if j.JWKSFile != "" || j.JWKSURL != "" {
			if j.Issuer == "" {
				bad("Negotiate.Auth.JWT.Issuer", "is required with a JWKS")
			}
			if j.Audience == "" {
				bad("Negotiate.Auth.JWT.Audience", "is required with a JWKS")
			}
		}
	}
	for i, g := range n.Groups {
		if _, err := template.ParseClaims(g); err != nil {
			bad(fmt.Sprintf("Negotiate.Groups[%d]", i), "%v", err)
		}
	}
	if n.GroupTTL < 0 {
		bad("Negotiate.GroupTTL", "must not be negative")
	}
	if n.AnonymousGroupTTL < time.Second {
		bad("Negotiate.AnonymousGroupTTL", "must be at least 1s")
	}
	if n.TokenTTL < MinTokenTTL {
		bad("Negotiate.TokenTTL", "must be at least %v", MinTokenTTL)
	}
	if c.Limits.MaxClientTokenTTL < MinTokenTTL {
		bad("Limits.MaxClientTokenTTL", "must be at least %v", MinTokenTTL)
	} else if n.TokenTTL > c.Limits.MaxClientTokenTTL {
		bad("Negotiate.TokenTTL", "%v is over Limits.MaxClientTokenTTL %v", n.TokenTTL, c.Limits.MaxClientTokenTTL)
	}
	for i, o := range c.CORSOrigins {
		if o == "*" {
			continue
		}
		if u, err := url.Parse(o); err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			bad(fmt.Sprintf("CORSOrigins[%d]", i), "%q is not an origin such as http://localhost:8080 (or *)", o)
		}
	}
	return errs
}

// jwksURLOK accepts https URLs, and http ones on a loopback host (a local
// identity provider in development): keys fetched in the clear could be
// replaced on the way.
func jwksURLOK(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return false
	}
	return u.Scheme == "https" || (u.Scheme == "http" && isLoopbackHost(u.Hostname()))
}

// redactURL hides a URL's password (Redis URLs may carry one).
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
}
