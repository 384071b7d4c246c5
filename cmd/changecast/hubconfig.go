package main

import (
	"github.com/changecast/changecast/publish/hub"
	"github.com/changecast/changecast/schema/config"
)

// hubConfig translates the config file's hub section into the options of
// publish/hub. Defaults and checks are the config's (ApplyDefaults,
// Validate); a field left empty keeps meaning hub's default.
func hubConfig(h config.Hub) hub.Config {
	n := h.Negotiate
	c := hub.Config{
		Listen:    h.Listen,
		AccessKey: h.AccessKey,
		Negotiate: hub.NegotiateConfig{
			Path:      n.Path,
			Hub:       n.Hub,
			Auth:      hub.NegotiateAuth{Anonymous: n.Auth.Anonymous},
			UserClaim: n.UserClaim,
			Groups:    n.Groups,
			GroupTTL:  n.GroupTTL.D(),
			TokenTTL:  n.TokenTTL.D(),
		},
		CORSOrigins: h.CORS.Origins,
		Static:      h.Static,
	}
	if j := n.Auth.JWT; j != nil {
		c.Negotiate.Auth.JWT = &hub.JWTAuth{
			HS256Secret: j.HS256Secret,
			JWKSFile:    j.JWKSFile,
			JWKSURL:     j.JWKSURL,
			Issuer:      j.Issuer,
			Audience:    j.Audience,
		}
	}
	return c
}
