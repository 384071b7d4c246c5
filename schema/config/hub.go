package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/changecast/changecast/schema/template"
)

// Hub configures the built-in SignalR-compatible hub, and the app
// negotiate endpoint (also served for Azure SignalR).
type Hub struct {
	Listen string `yaml:"listen,omitempty" json:"listen,omitempty" jsonschema_description:"Address the hub serves clients, the REST API and app negotiate on. Default 127.0.0.1:8080."`
	// PublicURL is where clients and REST callers reach the hub; when set,
	// the Host and X-Forwarded-Proto of requests are no longer trusted.
	PublicURL string `yaml:"publicURL,omitempty" json:"publicURL,omitempty" jsonschema_description:"The hub's endpoint as clients reach it (scheme://host[:port], e.g. behind a proxy): the URL negotiate hands out and the audience of every access token. Empty: the Host and X-Forwarded-Proto of each request (development only)."`
	AccessKey string `yaml:"accessKey,omitempty" json:"accessKey,omitempty" jsonschema_description:"AccessKey of the hub's connection string, at least 32 bytes (e.g. ${CHANGECAST_HUB_ACCESS_KEY}); generated and printed when empty."`
	// Hubs are the hubs served; anything else gets 404.
	Hubs      []string     `yaml:"hubs,omitempty" json:"hubs,omitempty" jsonschema_description:"Hubs served (names are case-insensitive); negotiate, the client endpoints and the REST API answer 404 for others. Default: the hubs of mappings[].hub."`
	Negotiate HubNegotiate `yaml:"negotiate,omitempty" json:"negotiate,omitempty" jsonschema_description:"The app negotiate endpoint clients call first (what the Functions SignalRConnectionInfo binding does)."`
	CORS      HubCORS      `yaml:"cors,omitempty" json:"cors,omitempty" jsonschema_description:"Browser origins allowed to call negotiate and the client endpoints, and to open WebSockets."`
	Limits    HubLimits    `yaml:"limits,omitempty" json:"limits,omitempty" jsonschema_description:"Bounds on connections, group memberships and access token lifetimes."`
	// Static serves a folder of files at / (the demo page).
	Static string `yaml:"static,omitempty" json:"static,omitempty" jsonschema_description:"Folder served at / (e.g. a web app); empty serves nothing."`
	// Transports are offered in this order; clients take the first they
	// can use (MessagePack clients skip ServerSentEvents, text only).
	Transports        []string             `yaml:"transports,omitempty" json:"transports,omitempty" jsonschema_description:"Client transports served, in the order negotiate offers them: WebSockets, ServerSentEvents, LongPolling. Default: all three, in that order."`
	StatefulReconnect HubStatefulReconnect `yaml:"statefulReconnect,omitempty" json:"statefulReconnect,omitempty" jsonschema_description:"Stateful reconnect (withStatefulReconnect, handshake version 2, WebSockets): a client whose connection dropped comes back to it and gets every message it missed, once."`
	// Backplane joins several hub processes behind one load balancer.
	Backplane *HubBackplane `yaml:"backplane,omitempty" json:"backplane,omitempty" jsonschema_description:"Lets several hub processes behind one load balancer serve the same hubs (sends, groups, users and existence checks reach every node; any node answers negotiate). Server-Sent Events, long polling and stateful reconnect need sticky sessions."`
	// Peers let a worker that cannot read a snapshot itself (a PostgreSQL
	// standby: snapshots are read beside the stream) answer anyway, by
	// forwarding the request to the worker that streams, and a stand-alone
	// hub node answer /snapshot and /changes by the workers
	// (docs/scale-out.md).
	Peers       []string `yaml:"peers,omitempty" json:"peers,omitempty" jsonschema_description:"Workers: the other workers' hub endpoints (scheme://host:port, as this worker reaches them; listing this worker too is harmless; an http endpoint whose host name resolves to several addresses, such as a Kubernetes headless Service, stands for each). A worker that cannot read a snapshot now (a PostgreSQL standby) forwards GET {negotiate.path}/snapshot to them, with the caller's credentials, and returns the first answer that is not 503 (default none: it answers 503); a stand-alone hub node (changecast hub) forwards /snapshot and /changes to them."`
	PeerTimeout Duration `yaml:"peerTimeout,omitempty" json:"peerTimeout,omitempty" jsonschema_description:"How long a forwarded snapshot request may take in all (then 503 with Retry-After). Default 10s."`
}

// HubStatefulReconnect bounds what the hub keeps for a client whose
// transport dropped.
type HubStatefulReconnect struct {
	Disabled    bool     `yaml:"disabled,omitempty" json:"disabled,omitempty" jsonschema_description:"Do not offer stateful reconnect; clients that ask get the plain protocol."`
	BufferBytes int      `yaml:"bufferBytes,omitempty" json:"bufferBytes,omitempty" jsonschema_description:"Bytes of messages kept for a client while its transport is gone; past it the connection ends and the client reconnects from scratch. Default 100000 (the clients' own buffer)."`
	Window      Duration `yaml:"window,omitempty" json:"window,omitempty" jsonschema_description:"How long a connection whose transport dropped waits for its client. Default 30s."`
}

// HubBackplane is the shared state of several hub nodes.
type HubBackplane struct {
	Redis *HubRedis `yaml:"redis,omitempty" json:"redis,omitempty" jsonschema_description:"Redis pub/sub carries sends and membership changes between nodes; Redis keys hold memberships (with TTLs), live connections and negotiated connection tokens."`
}

// HubRedis is the backplane's Redis.
type HubRedis struct {
	URL     string   `yaml:"url,omitempty" json:"url,omitempty" jsonschema_description:"redis://[user:password@]host:port[/db] (rediss:// for TLS), e.g. ${CHANGECAST_REDIS_URL}. Required."`
	Prefix  string   `yaml:"prefix,omitempty" json:"prefix,omitempty" jsonschema_description:"Prefix of every key and channel (several clusters can share one Redis). Default changecast:hub."`
	NodeTTL Duration `yaml:"nodeTTL,omitempty" json:"nodeTTL,omitempty" jsonschema_description:"How long a dead node's connections stay known (nodes renew theirs every third of it). Default 15s."`
}

// HubLimits bound what callers can make the hub hold.
type HubLimits struct {
	MaxConnections        int `yaml:"maxConnections,omitempty" json:"maxConnections,omitempty" jsonschema_description:"Open client connections; over it negotiate answers 429 and the WebSocket upgrade 503. Default 100000."`
	MaxConnectionsPerUser int `yaml:"maxConnectionsPerUser,omitempty" json:"maxConnectionsPerUser,omitempty" jsonschema_description:"Open connections of one user id, with the same answers. Default 100."`
	// MaxReadsPerCaller bounds the snapshot and /changes requests one
	// caller has in flight together: a reader asking for many pages in
	// parallel holds at most this many database connections and cores.
	MaxReadsPerCaller int      `yaml:"maxReadsPerCaller,omitempty" json:"maxReadsPerCaller,omitempty" jsonschema_description:"GET {negotiate.path}/snapshot and /changes requests one caller (a user id on a hub; anonymous callers: a client address) has in flight together; over it they answer 429 with Retry-After: 1. Default 8."`
	MaxGroupsPerUser  int      `yaml:"maxGroupsPerUser,omitempty" json:"maxGroupsPerUser,omitempty" jsonschema_description:"Groups one user belongs to per hub; joining one more drops the oldest membership, as Azure SignalR does. Default 100."`
	MaxClientTokenTTL Duration `yaml:"maxClientTokenTTL,omitempty" json:"maxClientTokenTTL,omitempty" jsonschema_description:"Longest remaining lifetime accepted of a client access token (also bounds negotiate.tokenTTL and :generateToken). Default 24h."`
	MaxRESTTokenTTL   Duration `yaml:"maxRESTTokenTTL,omitempty" json:"maxRESTTokenTTL,omitempty" jsonschema_description:"Longest remaining lifetime accepted of a REST API access token. Default 1h."`
}

// HubNegotiate is the app-side negotiate endpoint (what the Functions
// SignalRConnectionInfo binding does).
type HubNegotiate struct {
	Path      string        `yaml:"path,omitempty" json:"path,omitempty" jsonschema_description:"Prefix of POST {path}/negotiate. Default /api."`
	Hub       string        `yaml:"hub,omitempty" json:"hub,omitempty" jsonschema_description:"Hub used when the negotiate request has no ?hub= query; empty makes hub= required."`
	Auth      NegotiateAuth `yaml:"auth,omitempty" json:"auth,omitempty" jsonschema_description:"Who may negotiate (also the snapshot and /changes): anonymous: true, a JWT bearer, App Service authentication, an authenticating proxy or an app webhook; several may be set (asked in that order: appService, proxy, jwt, webhook; with anonymous a caller without a credential is let in)."`
	UserClaim string        `yaml:"userClaim,omitempty" json:"userClaim,omitempty" jsonschema_description:"Claim holding the user id. Default sub."`
	Groups    []string      `yaml:"groups,omitempty" json:"groups,omitempty" jsonschema_description:"Groups the user joins, templates over claims, e.g. tenant-{claims.tid}. A claim holding an array gives one group per element; a missing claim gives no group."`
	// GroupTTL bounds how long a negotiate's group membership outlives it.
	// Zero keeps it (Azure SignalR keeps user groups for a year), so a
	// connection open for days keeps its groups; a TTL instead makes a user
	// whose claims changed lose old groups at most GroupTTL later, at the
	// price of long-open connections losing them too until they reconnect.
	GroupTTL Duration `yaml:"groupTTL,omitempty" json:"groupTTL,omitempty" jsonschema_description:"How long an authenticated user stays in the groups a negotiate joined; renewed by every negotiate. Default 0: no expiry."`
	// AnonymousGroupTTL frees the groups of anonymous users (random ids)
	// on the built-in hub once they are gone.
	AnonymousGroupTTL Duration `yaml:"anonymousGroupTTL,omitempty" json:"anonymousGroupTTL,omitempty" jsonschema_description:"Built-in hub: how long the groups an anonymous negotiate joined are kept while that user is not connected. Default 5m."`
	// TokenTTL is the lifetime of the client access token negotiate returns.
	TokenTTL Duration `yaml:"tokenTTL,omitempty" json:"tokenTTL,omitempty" jsonschema_description:"Lifetime of the client access token negotiate returns. Default 1h."`
}

// NegotiateAuth says who may negotiate.
type NegotiateAuth struct {
	Anonymous bool     `yaml:"anonymous,omitempty" json:"anonymous,omitempty" jsonschema_description:"Anyone may negotiate (development). Anonymous users join only groups without claim holes."`
	JWT       *JWTAuth `yaml:"jwt,omitempty" json:"jwt,omitempty" jsonschema_description:"Verify the caller's Authorization: Bearer token."`
	// AppService, Proxy and Webhook are the identity providers besides a
	// JWT (see docs/auth.md).
	AppService *AppServiceAuth `yaml:"appService,omitempty" json:"appService,omitempty" jsonschema_description:"App Service or Container Apps authentication: the user comes from the X-MS-CLIENT-PRINCIPAL headers the platform's front end sets, taken only from trustedProxies."`
	Proxy      *ProxyAuth      `yaml:"proxy,omitempty" json:"proxy,omitempty" jsonschema_description:"An authenticating proxy such as oauth2-proxy: the user comes from X-Forwarded-User (X-Forwarded-Email, X-Forwarded-Groups as claims email and groups), taken only from trustedProxies."`
	Webhook    *WebhookAuth    `yaml:"webhook,omitempty" json:"webhook,omitempty" jsonschema_description:"Ask the app: negotiate POSTs the caller's headers to url and the app answers {userId, groups, claims, ttl} or 401/403."`
}

// AppServiceAuth trusts App Service / Container Apps authentication's
// headers. Anyone can send them; only the platform's front end strips and
// sets them, so they count only from its addresses.
type AppServiceAuth struct {
	TrustedProxies []string `yaml:"trustedProxies" json:"trustedProxies" jsonschema_description:"CIDRs the headers are taken from (e.g. 127.0.0.1/32 for Container Apps' sidecar); from any other address they are ignored. Required, no default."`
	UserClaim      string   `yaml:"userClaim,omitempty" json:"userClaim,omitempty" jsonschema_description:"The principal's claim type holding the user id. Default: the X-MS-CLIENT-PRINCIPAL-ID header."`
}

// ProxyAuth trusts an authenticating proxy's X-Forwarded-User headers.
type ProxyAuth struct {
	TrustedProxies []string `yaml:"trustedProxies" json:"trustedProxies" jsonschema_description:"CIDRs of the proxy; from any other address the headers are ignored. Required, no default."`
}

// WebhookAuth asks the app who the caller is.
type WebhookAuth struct {
	URL      string   `yaml:"url" json:"url" jsonschema_description:"The app's endpoint (http or https) negotiate POSTs {\"hub\"} and the caller's headers to. Required."`
	Timeout  Duration `yaml:"timeout,omitempty" json:"timeout,omitempty" jsonschema_description:"How long negotiate waits for the app; then 503. Default 3s."`
	Headers  []string `yaml:"headers,omitempty" json:"headers,omitempty" jsonschema_description:"The caller's request headers forwarded. Default [Authorization, Cookie]."`
	CacheTTL Duration `yaml:"cacheTTL,omitempty" json:"cacheTTL,omitempty" jsonschema_description:"Keep an answer this long for callers with the same forwarded headers and hub (the answer's ttl may shorten it). Default 0: ask the app every time."`
}

// JWTAuth verifies the caller's bearer token.
type JWTAuth struct {
	HS256Secret string `yaml:"hs256Secret,omitempty" json:"hs256Secret,omitempty" jsonschema_description:"Shared secret of HS256 tokens (its UTF-8 bytes)."`
	JWKSFile    string `yaml:"jwksFile,omitempty" json:"jwksFile,omitempty" jsonschema_description:"File holding a JSON Web Key Set of RSA keys (RS256 tokens)."`
	JWKSURL     string `yaml:"jwksURL,omitempty" json:"jwksURL,omitempty" jsonschema_description:"https URL (http only on a loopback host) of a JSON Web Key Set (RSA, EC, Ed25519 keys); fetched on first use and again on an unknown kid."`
	Authority   string `yaml:"authority,omitempty" json:"authority,omitempty" jsonschema_description:"OpenID Connect issuer URL (https; http only on a loopback host), e.g. https://login.microsoftonline.com/{tenant}/v2.0: its /.well-known/openid-configuration gives the JWKS and the issuer tokens must carry."`
	Issuer      string `yaml:"issuer,omitempty" json:"issuer,omitempty" jsonschema_description:"Required iss. Required with jwksFile or jwksURL; with authority it replaces the discovered issuer; with hs256Secret empty accepts any."`
	Audience    string `yaml:"audience,omitempty" json:"audience,omitempty" jsonschema_description:"Required aud. Required with jwksFile, jwksURL or authority; with hs256Secret empty accepts any."`
}

// HubCORS lists the origins allowed to call negotiate from a browser.
type HubCORS struct {
	Origins []string `yaml:"origins,omitempty" json:"origins,omitempty" jsonschema_description:"Allowed origins; * allows any. The Origin is echoed and credentials allowed; WebSocket upgrades from other origins are refused (requests without an Origin are not browsers and stay allowed). Empty: loopback origins only."`
}

// Hub defaults (publish/hub's, repeated here for the file's documentation).
const (
	DefaultHubListen             = "127.0.0.1:8080"
	DefaultNegotiatePath         = "/api"
	DefaultUserClaim             = "sub"
	DefaultHubTokenTTL           = Duration(time.Hour) // Azure SignalR's SDK default
	DefaultAnonymousGroupTTL     = Duration(5 * time.Minute)
	DefaultMaxConnections        = 100_000
	DefaultMaxConnectionsPerUser = 100
	DefaultMaxReadsPerCaller     = 8
	DefaultMaxGroupsPerUser      = 100
	DefaultMaxClientTokenTTL     = Duration(24 * time.Hour)
	DefaultMaxRESTTokenTTL       = Duration(time.Hour)
	// MinAccessKeyBytes is the shortest hub.accessKey accepted.
	MinAccessKeyBytes = 32
	// Stateful reconnect and backplane defaults.
	DefaultStatefulBufferBytes = 100_000
	DefaultStatefulWindow      = Duration(30 * time.Second)
	DefaultPeerTimeout         = Duration(10 * time.Second)
	DefaultBackplanePrefix     = "changecast:hub"
	DefaultBackplaneNodeTTL    = Duration(15 * time.Second)
)

// DefaultHubTransports are the client transports served by default, in
// negotiate's order.
var DefaultHubTransports = []string{"WebSockets", "ServerSentEvents", "LongPolling"}

// ApplyDefaults fills the hub's optional fields left empty.
func (h *Hub) ApplyDefaults() { h.applyDefaults() }

// Validate reports every problem of a hub section on its own, with paths
// under "hub". Call ApplyDefaults first.
func (h *Hub) Validate() error {
	var p problems
	h.validate("hub", &p)
	return errors.Join(p...)
}

func (h *Hub) applyDefaults() {
	setStr(&h.Listen, DefaultHubListen)
	setStr(&h.Negotiate.Path, DefaultNegotiatePath)
	setStr(&h.Negotiate.UserClaim, DefaultUserClaim)
	setDur(&h.Negotiate.TokenTTL, DefaultHubTokenTTL.D())
	setDur(&h.Negotiate.AnonymousGroupTTL, DefaultAnonymousGroupTTL.D())
	l := &h.Limits
	setInt(&l.MaxConnections, DefaultMaxConnections)
	setInt(&l.MaxConnectionsPerUser, DefaultMaxConnectionsPerUser)
	setInt(&l.MaxReadsPerCaller, DefaultMaxReadsPerCaller)
	setInt(&l.MaxGroupsPerUser, DefaultMaxGroupsPerUser)
	setDur(&l.MaxClientTokenTTL, DefaultMaxClientTokenTTL.D())
	setDur(&l.MaxRESTTokenTTL, DefaultMaxRESTTokenTTL.D())
	if len(h.Transports) == 0 {
		h.Transports = append([]string(nil), DefaultHubTransports...)
	}
	setInt(&h.StatefulReconnect.BufferBytes, DefaultStatefulBufferBytes)
	setDur(&h.StatefulReconnect.Window, DefaultStatefulWindow.D())
	setDur(&h.PeerTimeout, DefaultPeerTimeout.D())
	if b := h.Backplane; b != nil && b.Redis != nil {
		setStr(&b.Redis.Prefix, DefaultBackplanePrefix)
		setDur(&b.Redis.NodeTTL, DefaultBackplaneNodeTTL.D())
	}
}

func setInt(p *int, def int) {
	if *p == 0 {
		*p = def
	}
}

// hubsOf is the hubs mappings name, each once (hub names are
// case-insensitive), in order.
func hubsOf(ms []Mapping) []string {
	var out []string
	seen := map[string]bool{}
	for _, m := range ms {
		if k := strings.ToLower(m.Hub); m.Hub != "" && !seen[k] {
			seen[k] = true
			out = append(out, m.Hub)
		}
	}
	return out
}

func (h *Hub) validate(path string, p *problems) {
	if strings.ContainsAny(h.AccessKey, "; \t\r\n") {
		p.add(path+".accessKey", "must not contain ';' or spaces (it goes into a connection string)")
	}
	if h.AccessKey != "" && len(h.AccessKey) < MinAccessKeyBytes {
		p.add(path+".accessKey", "is shorter than %d bytes (leave it empty to have one generated)", MinAccessKeyBytes)
	}
	if err := validListen(h.Listen); err != nil {
		p.add(path+".listen", "%v", err)
	}
	for i, peer := range h.Peers {
		if !isEndpoint(peer) {
			p.add(fmt.Sprintf("%s.peers[%d]", path, i), "%q is not an endpoint such as http://10.0.0.2:8080", peer)
		}
	}
	if h.PeerTimeout < 0 {
		p.add(path+".peerTimeout", "must not be negative")
	}
	if h.PublicURL != "" {
		if !isEndpoint(h.PublicURL) {
			p.add(path+".publicURL", "%q is not an endpoint such as https://hub.example.com", h.PublicURL)
		}
	}
	if len(h.Hubs) == 0 {
		p.add(path+".hubs", "list at least one hub to serve (default: the hubs of mappings)")
	}
	served := map[string]bool{}
	for i, name := range h.Hubs {
		if !hubNameRe.MatchString(name) {
			p.add(fmt.Sprintf("%s.hubs[%d]", path, i), "%q is not a valid hub name (a letter, then letters, digits, _`,.[])", name)
		}
		served[strings.ToLower(name)] = true
	}
	n := h.Negotiate
	if !strings.HasPrefix(n.Path, "/") {
		p.add(path+".negotiate.path", "%q must start with /", n.Path)
	}
	if n.Hub != "" && !hubNameRe.MatchString(n.Hub) {
		p.add(path+".negotiate.hub", "%q is not a valid hub name (a letter, then letters, digits, _`,.[])", n.Hub)
	} else if n.Hub != "" && !served[strings.ToLower(n.Hub)] {
		p.add(path+".negotiate.hub", "%q is not one of %s.hubs", n.Hub, path)
	}
	a := n.Auth
	if !a.Any() {
		p.add(path+".negotiate.auth", "set anonymous: true, jwt, appService, proxy or webhook")
	}
	a.validateProviders(path+".negotiate.auth", p)
	if j := a.JWT; j != nil {
		n := 0
		for _, s := range []string{j.HS256Secret, j.JWKSFile, j.JWKSURL, j.Authority} {
			if s != "" {
				n++
			}
		}
		if n != 1 {
			p.add(path+".negotiate.auth.jwt", "set exactly one of hs256Secret, jwksFile, jwksURL, authority")
		}
		if j.HS256Secret != "" && len(j.HS256Secret) < 16 {
			p.add(path+".negotiate.auth.jwt.hs256Secret", "is shorter than 16 bytes")
		}
		if j.JWKSURL != "" {
			u, err := url.Parse(j.JWKSURL)
			if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname()))) {
				p.add(path+".negotiate.auth.jwt.jwksURL", "%q is not an https URL (http only on a loopback host)", j.JWKSURL)
			}
		}
		if j.JWKSFile != "" || j.JWKSURL != "" {
			// An identity provider's keys sign tokens for every app it
			// serves: only iss and aud make a token one for this app.
			if j.Issuer == "" {
				p.add(path+".negotiate.auth.jwt.issuer", "is required with jwksFile or jwksURL")
			}
			if j.Audience == "" {
				p.add(path+".negotiate.auth.jwt.audience", "is required with jwksFile or jwksURL")
			}
		}
	}
	if n.UserClaim == "" {
		p.add(path+".negotiate.userClaim", "is required")
	}
	for i, g := range n.Groups {
		if _, err := template.ParseClaims(g); err != nil {
			p.add(fmt.Sprintf("%s.negotiate.groups[%d]", path, i), "%v", err)
		}
	}
	if n.GroupTTL < 0 {
		p.add(path+".negotiate.groupTTL", "must not be negative")
	}
	if n.AnonymousGroupTTL.D() < time.Second {
		p.add(path+".negotiate.anonymousGroupTTL", "must be at least 1s")
	}
	l := h.Limits
	if n.TokenTTL.D() < time.Minute {
		p.add(path+".negotiate.tokenTTL", "must be at least 1m")
	}
	if l.MaxClientTokenTTL.D() < time.Minute {
		p.add(path+".limits.maxClientTokenTTL", "must be at least 1m")
	} else if n.TokenTTL > l.MaxClientTokenTTL {
		p.add(path+".negotiate.tokenTTL", "%v is over %s.limits.maxClientTokenTTL %v", n.TokenTTL.D(), path, l.MaxClientTokenTTL.D())
	}
	if l.MaxRESTTokenTTL.D() < time.Minute {
		p.add(path+".limits.maxRESTTokenTTL", "must be at least 1m")
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"maxConnections", l.MaxConnections}, {"maxConnectionsPerUser", l.MaxConnectionsPerUser}, {"maxReadsPerCaller", l.MaxReadsPerCaller}, {"maxGroupsPerUser", l.MaxGroupsPerUser}} {
		if f.v < 1 {
			p.add(path+".limits."+f.name, "must be at least 1")
		}
	}
	seen := map[string]bool{}
	for i, t := range h.Transports {
		if !slices.Contains(DefaultHubTransports, t) {
			p.add(fmt.Sprintf("%s.transports[%d]", path, i), "%q is not WebSockets, ServerSentEvents or LongPolling", t)
		} else if seen[t] {
			p.add(fmt.Sprintf("%s.transports[%d]", path, i), "%q is listed twice", t)
		}
		seen[t] = true
	}
	if h.StatefulReconnect.BufferBytes < 1 {
		p.add(path+".statefulReconnect.bufferBytes", "must be at least 1")
	}
	if h.StatefulReconnect.Window.D() < time.Second {
		p.add(path+".statefulReconnect.window", "must be at least 1s")
	}
	if b := h.Backplane; b != nil {
		if h.AccessKey == "" {
			p.add(path+".accessKey", "is required with backplane: every node signs and checks tokens with it (changecast hub also takes it from $CHANGECAST_HUB_ACCESS_KEY)")
		}
		switch {
		case b.Redis == nil:
			p.add(path+".backplane.redis", "is required (the only backplane)")
		case b.Redis.URL == "":
			p.add(path+".backplane.redis.url", "is required, e.g. redis://redis:6379")
		default:
			if u, err := url.Parse(b.Redis.URL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
				p.add(path+".backplane.redis.url", "is not a redis:// or rediss:// URL")
			}
			if b.Redis.NodeTTL.D() < 3*time.Second {
				p.add(path+".backplane.redis.nodeTTL", "must be at least 3s")
			}
		}
	}
	for i, o := range h.CORS.Origins {
		if o == "*" {
			continue
		}
		if u, err := url.Parse(o); err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			p.add(fmt.Sprintf("%s.cors.origins[%d]", path, i), "%q is not an origin such as http://localhost:8080 (or *)", o)
		}
	}
}

// DecodeHub reads a file holding only a hub section (the keys under hub:
// in the config file), with the same ${ENV} interpolation and strictness.
// Call ApplyDefaults and Validate once the command line has added to it.
func DecodeHub(raw []byte, env func(string) (string, bool)) (*Hub, error) {
	var h Hub
	if _, err := decodeStrict(raw, env, &h, "hub config", "hub"); err != nil {
		return nil, err
	}
	return &h, nil
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Any says whether some caller may negotiate: anonymous, or an identity
// provider. Without it, negotiate is not served next to Azure SignalR.
func (a NegotiateAuth) Any() bool {
	return a.Anonymous || a.JWT != nil || a.AppService != nil || a.Proxy != nil || a.Webhook != nil
}

// validateProviders checks appService, proxy, webhook and jwt.authority.
func (a NegotiateAuth) validateProviders(path string, p *problems) {
	cidrs := func(field string, list []string) {
		if len(list) == 0 {
			p.add(field, "is required: the addresses of the proxy that sets the headers (anyone could send them)")
		}
		for i, c := range list {
			if !validCIDR(c) {
				p.add(fmt.Sprintf("%s[%d]", field, i), "%q is not a CIDR such as 10.0.0.0/8", c)
			}
		}
	}
	if s := a.AppService; s != nil {
		cidrs(path+".appService.trustedProxies", s.TrustedProxies)
	}
	if x := a.Proxy; x != nil {
		cidrs(path+".proxy.trustedProxies", x.TrustedProxies)
	}
	if w := a.Webhook; w != nil {
		if w.URL == "" {
			p.add(path+".webhook.url", "is required: the app's endpoint that says who the caller is")
		} else if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add(path+".webhook.url", "%q is not an http(s) URL", w.URL)
		}
		if w.Timeout < 0 {
			p.add(path+".webhook.timeout", "must not be negative")
		}
		if w.CacheTTL < 0 {
			p.add(path+".webhook.cacheTTL", "must not be negative")
		}
		for i, h := range w.Headers {
			if h == "" || strings.ContainsAny(h, " :\t\r\n") {
				p.add(fmt.Sprintf("%s.webhook.headers[%d]", path, i), "%q is not a header name", h)
			}
		}
	}
	if j := a.JWT; j != nil && j.Authority != "" {
		if u, err := url.Parse(j.Authority); err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname()))) {
			p.add(path+".jwt.authority", "%q is not an https URL (http only on a loopback host)", j.Authority)
		}
		if j.Audience == "" {
			p.add(path+".jwt.audience", "is required with authority (the provider's keys sign tokens for every app it serves)")
		}
	}
}

// validCIDR accepts a CIDR or a single address.
func validCIDR(s string) bool {
	if _, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil {
		return true
	}
	_, err := netip.ParseAddr(strings.TrimSpace(s))
	return err == nil
}

// isEndpoint reports whether s is scheme://host[:port] (http or https),
// with no path, query or credentials.
func isEndpoint(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.User == nil &&
		(u.Path == "" || u.Path == "/") && u.RawQuery == "" && u.Fragment == ""
}
