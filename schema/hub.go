package schema

import "fmt"

// Hub configures the built-in SignalR-compatible hub.
type Hub struct {
	Listen    string       `yaml:"listen,omitempty" json:"listen,omitempty" jsonschema_description:"Address the hub serves clients, the REST API and app negotiate on. Default 127.0.0.1:8080."`
	AccessKey string       `yaml:"accessKey,omitempty" json:"accessKey,omitempty" jsonschema_description:"AccessKey of the hub's connection string; generated and printed when empty."`
	Negotiate HubNegotiate `yaml:"negotiate,omitempty" json:"negotiate,omitempty"`
	CORS      HubCORS      `yaml:"cors,omitempty" json:"cors,omitempty"`
	// Static serves a folder of files at / (the demo page).
	Static string `yaml:"static,omitempty" json:"static,omitempty" jsonschema_description:"Folder served at / (e.g. a web app); empty serves nothing."`
}

// HubNegotiate is the app-side negotiate endpoint (what the Functions
// SignalRConnectionInfo binding does).
type HubNegotiate struct {
	Path      string        `yaml:"path,omitempty" json:"path,omitempty" jsonschema_description:"Prefix of POST {path}/negotiate. Default /api."`
	Auth      NegotiateAuth `yaml:"auth,omitempty" json:"auth,omitempty"`
	UserClaim string        `yaml:"userClaim,omitempty" json:"userClaim,omitempty" jsonschema_description:"Claim holding the user id. Default sub."`
	Groups    []string      `yaml:"groups,omitempty" json:"groups,omitempty" jsonschema_description:"Groups the user joins, templates over claims, e.g. tenant-{claims.tid}."`
}

// NegotiateAuth says who may negotiate.
type NegotiateAuth struct {
	Anonymous bool     `yaml:"anonymous,omitempty" json:"anonymous,omitempty"`
	JWT       *JWTAuth `yaml:"jwt,omitempty" json:"jwt,omitempty"`
}

// JWTAuth verifies the caller's bearer token.
type JWTAuth struct {
	HS256Secret string `yaml:"hs256Secret,omitempty" json:"hs256Secret,omitempty"`
	JWKSFile    string `yaml:"jwksFile,omitempty" json:"jwksFile,omitempty"`
	JWKSURL     string `yaml:"jwksURL,omitempty" json:"jwksURL,omitempty"`
	Issuer      string `yaml:"issuer,omitempty" json:"issuer,omitempty"`
	Audience    string `yaml:"audience,omitempty" json:"audience,omitempty"`
}

// HubCORS lists the origins allowed to call negotiate from a browser.
type HubCORS struct {
	Origins []string `yaml:"origins,omitempty" json:"origins,omitempty" jsonschema_description:"Allowed origins; * allows any. The Origin is echoed and credentials allowed."`
}

func (h *Hub) applyDefaults() {
	setStr(&h.Listen, "127.0.0.1:8080")
	setStr(&h.Negotiate.Path, "/api")
	setStr(&h.Negotiate.UserClaim, "sub")
}

func (h *Hub) validate(path string, p *problems) {
	a := h.Negotiate.Auth
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
	}
	for i, g := range h.Negotiate.Groups {
		if g == "" {
			p.add(fmt.Sprintf("%s.negotiate.groups[%d]", path, i), "is empty")
		}
	}
}
