package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/changecast/changecast/schema/template"
)

// Hub configures the built-in SignalR-compatible hub.
type Hub struct {
	Listen    string       `yaml:"listen,omitempty" json:"listen,omitempty" jsonschema_description:"Address the hub serves clients, the REST API and app negotiate on. Default 127.0.0.1:8080."`
	AccessKey string       `yaml:"accessKey,omitempty" json:"accessKey,omitempty" jsonschema_description:"AccessKey of the hub's connection string; generated and printed when empty."`
	Negotiate HubNegotiate `yaml:"negotiate,omitempty" json:"negotiate,omitempty" jsonschema_description:"The app negotiate endpoint clients call first (what the Functions SignalRConnectionInfo binding does)."`
	CORS      HubCORS      `yaml:"cors,omitempty" json:"cors,omitempty" jsonschema_description:"Browser origins allowed to call negotiate and the client endpoints."`
	// Static serves a folder of files at / (the demo page).
	Static string `yaml:"static,omitempty" json:"static,omitempty" jsonschema_description:"Folder served at / (e.g. a web app); empty serves nothing."`
}

// HubNegotiate is the app-side negotiate endpoint (what the Functions
// SignalRConnectionInfo binding does).
type HubNegotiate struct {
	Path      string        `yaml:"path,omitempty" json:"path,omitempty" jsonschema_description:"Prefix of POST {path}/negotiate. Default /api."`
	Hub       string        `yaml:"hub,omitempty" json:"hub,omitempty" jsonschema_description:"Hub used when the negotiate request has no ?hub= query; empty makes hub= required."`
	Auth      NegotiateAuth `yaml:"auth,omitempty" json:"auth,omitempty" jsonschema_description:"Who may negotiate: anonymous: true, or a JWT bearer (both: the token is optional but checked when present)."`
	UserClaim string        `yaml:"userClaim,omitempty" json:"userClaim,omitempty" jsonschema_description:"Claim holding the user id. Default sub."`
	Groups    []string      `yaml:"groups,omitempty" json:"groups,omitempty" jsonschema_description:"Groups the user joins, templates over claims, e.g. tenant-{claims.tid}. A claim holding an array gives one group per element; a missing claim gives no group."`
	// GroupTTL bounds how long a negotiate's group membership outlives it.
	// Zero keeps it (Azure SignalR keeps user groups for a year), so a
	// connection open for days keeps its groups; a TTL instead makes a user
	// whose claims changed lose old groups at most GroupTTL later, at the
	// price of long-open connections losing them too until they reconnect.
	GroupTTL Duration `yaml:"groupTTL,omitempty" json:"groupTTL,omitempty" jsonschema_description:"How long a user stays in the groups a negotiate joined; renewed by every negotiate. Default 0: no expiry."`
	// TokenTTL is the lifetime of the client access token negotiate returns.
	TokenTTL Duration `yaml:"tokenTTL,omitempty" json:"tokenTTL,omitempty" jsonschema_description:"Lifetime of the client access token negotiate returns. Default 1h."`
}

// NegotiateAuth says who may negotiate.
type NegotiateAuth struct {
	Anonymous bool     `yaml:"anonymous,omitempty" json:"anonymous,omitempty" jsonschema_description:"Anyone may negotiate (development). Anonymous users join only groups without claim holes."`
	JWT       *JWTAuth `yaml:"jwt,omitempty" json:"jwt,omitempty" jsonschema_description:"Verify the caller's Authorization: Bearer token."`
}

// JWTAuth verifies the caller's bearer token.
type JWTAuth struct {
	HS256Secret string `yaml:"hs256Secret,omitempty" json:"hs256Secret,omitempty" jsonschema_description:"Shared secret of HS256 tokens (its UTF-8 bytes)."`
	JWKSFile    string `yaml:"jwksFile,omitempty" json:"jwksFile,omitempty" jsonschema_description:"File holding a JSON Web Key Set of RSA keys (RS256 tokens)."`
	JWKSURL     string `yaml:"jwksURL,omitempty" json:"jwksURL,omitempty" jsonschema_description:"URL of a JSON Web Key Set of RSA keys (RS256 tokens); fetched at start and again on an unknown kid."`
	Issuer      string `yaml:"issuer,omitempty" json:"issuer,omitempty" jsonschema_description:"Required iss; empty accepts any."`
	Audience    string `yaml:"audience,omitempty" json:"audience,omitempty" jsonschema_description:"Required aud; empty accepts any."`
}

// HubCORS lists the origins allowed to call negotiate from a browser.
type HubCORS struct {
	Origins []string `yaml:"origins,omitempty" json:"origins,omitempty" jsonschema_description:"Allowed origins; * allows any. The Origin is echoed and credentials allowed. Empty: no cross-origin access."`
}

// Hub defaults.
const (
	DefaultHubListen     = "127.0.0.1:8080"
	DefaultNegotiatePath = "/api"
	DefaultUserClaim     = "sub"
	DefaultHubTokenTTL   = Duration(3600e9) // 1h, Azure SignalR's SDK default
)

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
	if h.Negotiate.TokenTTL == 0 {
		h.Negotiate.TokenTTL = DefaultHubTokenTTL
	}
}

func (h *Hub) validate(path string, p *problems) {
	n := h.Negotiate
	if !strings.HasPrefix(n.Path, "/") {
		p.add(path+".negotiate.path", "%q must start with /", n.Path)
	}
	if n.Hub != "" && !hubNameRe.MatchString(n.Hub) {
		p.add(path+".negotiate.hub", "%q is not a valid hub name (a letter, then letters, digits, _`,.[])", n.Hub)
	}
	a := n.Auth
	if !a.Anonymous && a.JWT == nil {
		p.add(path+".negotiate.auth", "set anonymous: true or jwt")
	}
	if j := a.JWT; j != nil {
		n := 0
		for _, s := range []string{j.HS256Secret, j.JWKSFile, j.JWKSURL} {
			if s != "" {
				n++
			}
		}
		if n != 1 {
			p.add(path+".negotiate.auth.jwt", "set exactly one of hs256Secret, jwksFile, jwksURL")
		}
		if j.HS256Secret != "" && len(j.HS256Secret) < 16 {
			p.add(path+".negotiate.auth.jwt.hs256Secret", "is shorter than 16 bytes")
		}
		if j.JWKSURL != "" {
			if u, err := url.Parse(j.JWKSURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				p.add(path+".negotiate.auth.jwt.jwksURL", "%q is not an http(s) URL", j.JWKSURL)
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
	if n.TokenTTL.D() < 60e9 {
		p.add(path+".negotiate.tokenTTL", "must be at least 1m")
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

// ParseHub reads a file holding only a hub section (the keys under hub: in
// the config file), with the same ${ENV} interpolation, defaults and checks.
func ParseHub(raw []byte, env func(string) (string, bool)) (*Hub, error) {
	var h Hub
	if err := decodeStrict(raw, env, &h, "hub config"); err != nil {
		return nil, err
	}
	h.applyDefaults()
	if err := h.Validate(); err != nil {
		return nil, err
	}
	return &h, nil
}
