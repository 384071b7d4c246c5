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
)

// Config is what a Server serves. A Negotiator uses only Negotiate and
// CORSOrigins. Every field is optional except Negotiate.Auth; a zero field
// means what its comment says.
type Config struct {
	// Listen is the address Run listens on. Zero: DefaultListen.
	Listen string
	// AccessKey signs and verifies access tokens (HS256 over its UTF-8
	// bytes); it goes into the connection string, so it must hold no ';'
	// or white space. Zero: a random key (NewAccessKey), which
	// Server.AccessKey and Server.ConnectionString give.
	AccessKey string
	// Negotiate configures the app negotiate endpoint.
	Negotiate NegotiateConfig
	// CORSOrigins are the browser origins (scheme://host[:port]) allowed to
	// call the hub's endpoints; "*" allows any. The Origin is echoed and
	// credentials are allowed. Zero: no cross-origin access.
	CORSOrigins []string
	// Static is a folder served at / (e.g. a web app). Zero: nothing is
	// served at /.
	Static string
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
	// GroupTTL bounds how long the group memberships of a negotiate
	// outlive it; every negotiate renews them. Zero: they never expire (as
	// Azure SignalR keeps user groups), so a connection open for days keeps
	// its groups; a TTL instead makes a user whose claims changed lose old
	// groups at most GroupTTL later, and long-open connections lose them
	// too until they reconnect.
	GroupTTL time.Duration
	// TokenTTL is the lifetime of the client access token negotiate
	// returns, at least MinTokenTTL. Zero: DefaultTokenTTL.
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
}

// JWTAuth verifies app users' tokens. Exactly one of HS256Secret,
// JWKSFile and JWKSURL is set.
type JWTAuth struct {
	// HS256Secret is the shared secret of HS256 tokens (its UTF-8 bytes,
	// at least 16).
	HS256Secret string
	// JWKSFile is a file holding a JSON Web Key Set of RSA keys (RS256
	// tokens), read once by New or NewNegotiator.
	JWKSFile string
	// JWKSURL is the http(s) URL of a JSON Web Key Set of RSA keys (RS256
	// tokens), fetched on first use and again on an unknown kid.
	JWKSURL string
	// Issuer is the required iss. Zero: any.
	Issuer string
	// Audience is the required aud. Zero: any.
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
	return c
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
	return errors.Join(append(errs, c.validateNegotiate()...)...)
}

// validateNegotiate checks what a Negotiator uses: Negotiate and
// CORSOrigins, with defaults applied.
func (c Config) validateNegotiate() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("hub: "+field+": "+format, args...))
	}
	n := c.Negotiate
	if !strings.HasPrefix(n.Path, "/") {
		bad("Negotiate.Path", "%q must start with /", n.Path)
	}
	if n.Hub != "" && !validHub(n.Hub) {
		bad("Negotiate.Hub", "%q is not a valid hub name (a letter, then letters, digits, _`,.[])", n.Hub)
	}
	if !n.Auth.Anonymous && n.Auth.JWT == nil {
		bad("Negotiate.Auth", "set Anonymous or JWT")
	}
	if j := n.Auth.JWT; j != nil {
		set := 0
		for _, s := range []string{j.HS256Secret, j.JWKSFile, j.JWKSURL} {
			if s != "" {
				set++
			}
		}
		if set != 1 {
			bad("Negotiate.Auth.JWT", "set exactly one of HS256Secret, JWKSFile, JWKSURL")
		}
		if j.HS256Secret != "" && len(j.HS256Secret) < 16 {
			bad("Negotiate.Auth.JWT.HS256Secret", "is shorter than 16 bytes")
		}
		if j.JWKSURL != "" {
			if u, err := url.Parse(j.JWKSURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				bad("Negotiate.Auth.JWT.JWKSURL", "%q is not an http(s) URL", j.JWKSURL)
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
	if n.TokenTTL < MinTokenTTL {
		bad("Negotiate.TokenTTL", "must be at least %v", MinTokenTTL)
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
