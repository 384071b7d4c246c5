package hub

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/changecast/changecast/schema/wire"
)

// The headers App Service and Container Apps authentication set.
const (
	headerPrincipal     = "X-MS-CLIENT-PRINCIPAL"
	headerPrincipalID   = "X-MS-CLIENT-PRINCIPAL-ID"
	headerPrincipalName = "X-MS-CLIENT-PRINCIPAL-NAME"
	headerPrincipalIDP  = "X-MS-CLIENT-PRINCIPAL-IDP"
)

// Bounds on a principal: the platform's are far smaller; these only keep
// a forged one from costing much.
const (
	maxPrincipalBytes  = 64 << 10
	maxPrincipalClaims = 1000
)

type appServiceAuth struct {
	trusted   trusted
	userClaim string
}

func newAppServiceAuth(c AppServiceAuth) (*appServiceAuth, error) {
	t, err := newTrusted(c.TrustedProxies)
	if err != nil {
		return nil, err
	}
	return &appServiceAuth{trusted: t, userClaim: c.UserClaim}, nil
}

// authenticate reads the platform's headers of a request from a trusted
// proxy: nil, nil when there are none (or the request came from anyone
// else, whose headers mean nothing).
func (a *appServiceAuth) authenticate(r *http.Request) (*identity, error) {
	if !a.trusted.has(r) {
		return nil, nil
	}
	p, id := r.Header.Get(headerPrincipal), r.Header.Get(headerPrincipalID)
	if p == "" && id == "" {
		return nil, nil
	}
	claims := map[string]any{}
	if p != "" {
		var err error
		if claims, err = parseClientPrincipal(p); err != nil {
			return nil, err
		}
	}
	if v := r.Header.Get(headerPrincipalIDP); v != "" {
		claims["idp"] = v
	}
	if v := r.Header.Get(headerPrincipalName); v != "" {
		claims["name"] = v
	}
	user := id
	if a.userClaim != "" {
		u, ok := wire.ScalarString(claims[a.userClaim])
		if !ok {
			return nil, fmt.Errorf("the client principal has no single %q claim", truncate(a.userClaim, 64))
		}
		user = u
	}
	if user == "" {
		return nil, errors.New("no " + headerPrincipalID)
	}
	return &identity{user: user, claims: claims}, nil
}

// parseClientPrincipal decodes X-MS-CLIENT-PRINCIPAL: base64 of
// {"auth_typ", "name_typ", "role_typ", "claims": [{"typ", "val"}]}. Each
// typ becomes a claim (a repeated one an array of its values); idp is
// auth_typ, name the value of the name_typ claim and roles the values of
// the role_typ claims, so that templates need not spell the long claim
// types Entra ID uses.
func parseClientPrincipal(s string) (map[string]any, error) {
	if len(s) > maxPrincipalBytes*4/3+4 {
		return nil, errors.New("the client principal is too long")
	}
	var b []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err = enc.DecodeString(strings.TrimSpace(s)); err == nil {
			break
		}
	}
	if err != nil {
		return nil, errors.New("the client principal is not base64")
	}
	var p struct {
		AuthTyp string `json:"auth_typ"`
		NameTyp string `json:"name_typ"`
		RoleTyp string `json:"role_typ"`
		Claims  []struct {
			Typ string `json:"typ"`
			Val string `json:"val"`
		} `json:"claims"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("the client principal is not JSON: %w", err)
	}
	if len(p.Claims) > maxPrincipalClaims {
		return nil, fmt.Errorf("the client principal has over %d claims", maxPrincipalClaims)
	}
	claims := map[string]any{}
	add := func(typ, val string) {
		switch old := claims[typ].(type) {
		case nil:
			claims[typ] = val
		case string:
			claims[typ] = []any{old, val}
		case []any:
			claims[typ] = append(old, val)
		}
	}
	var roles []any
	for _, c := range p.Claims {
		if c.Typ == "" {
			return nil, errors.New("the client principal has a claim without typ")
		}
		add(c.Typ, c.Val)
		if c.Typ == p.RoleTyp {
			roles = append(roles, c.Val)
		}
	}
	if p.AuthTyp != "" {
		claims["idp"] = p.AuthTyp
	}
	if v, ok := claims[p.NameTyp].(string); ok && p.NameTyp != "" {
		claims["name"] = v
	}
	if roles != nil && p.RoleTyp != "roles" {
		claims["roles"] = roles
	}
	return claims, nil
}

// proxyAuth reads the headers oauth2-proxy (and proxies like it) set.
type proxyAuth struct{ trusted trusted }

func (a *proxyAuth) authenticate(r *http.Request) (*identity, error) {
	if !a.trusted.has(r) {
		return nil, nil
	}
	user := r.Header.Get("X-Forwarded-User")
	if user == "" {
		return nil, nil
	}
	claims := map[string]any{"sub": user}
	if v := r.Header.Get("X-Forwarded-Email"); v != "" {
		claims["email"] = v
	}
	var groups []any
	for _, v := range r.Header.Values("X-Forwarded-Groups") {
		for g := range strings.SplitSeq(v, ",") {
			if g = strings.TrimSpace(g); g != "" {
				groups = append(groups, g)
			}
		}
	}
	if groups != nil {
		claims["groups"] = groups
	}
	return &identity{user: user, claims: claims}, nil
}
