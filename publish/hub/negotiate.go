package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/changecast/changecast/schema/template"
	"github.com/changecast/changecast/schema/wire"
)

// Service is the SignalR service a Negotiator sends clients to: it joins
// users to groups and hands out client URLs and tokens. *signalr.Client
// satisfies it, for Azure SignalR Service (or a built-in hub reached over
// its REST API).
type Service interface {
	// AddUserToGroup adds user to group of hub; the membership outlives
	// the user's connections, for ttl (0: the service's longest).
	AddUserToGroup(ctx context.Context, hub, group, user string, ttl time.Duration) error
	// ClientURL is the URL clients of hub connect to.
	ClientURL(hub string) string
	// ClientToken is an access token for a client of hub carrying user,
	// valid for ttl.
	ClientToken(ctx context.Context, hub, user string, ttl time.Duration) (string, error)
}

// service is what a Negotiator needs: a Service, or this hub, which sends
// clients to its public endpoint and joins groups in its registry.
type service interface {
	clientAccess(ctx context.Context, r *http.Request, hub, user string, ttl time.Duration) (url, token string, err error)
	join(ctx context.Context, c Caller, group string) error
	// admit says whether user may open one more connection now.
	admit(user string) error
}

// selfService sends clients to this hub: at its PublicURL, or else at the
// host they reached negotiate on (so a page loaded from localhost is not
// sent to 127.0.0.1, a foreign origin). Group joins go straight into the
// registry.
type selfService struct{ s *Server }

func (ss selfService) clientAccess(_ context.Context, r *http.Request, hub, user string, ttl time.Duration) (string, string, error) {
	u := ss.s.endpoint(r).base() + "/client/?hub=" + url.QueryEscape(hubKey(hub))
	tok, err := signAccessToken(ss.s.key, u, user, ttl)
	return u, tok, err
}

// join keeps an anonymous user's groups for AnonymousGroupTTL while it is
// not connected (its id is random, so nothing else would ever free them),
// and an authenticated user's for GroupTTL (0: no expiry).
func (ss selfService) join(ctx context.Context, c Caller, group string) error {
	n := ss.s.cfg.Negotiate
	ttl, keep := n.GroupTTL, false
	if c.Anonymous {
		ttl, keep = n.AnonymousGroupTTL, true
	}
	return ss.s.addUserToGroup(ctx, c.Hub, group, c.User, ttl, keep)
}

func (ss selfService) admit(user string) error { return ss.s.reg.admit(user) }

// remoteService sends clients to the service behind a Service.
type remoteService struct {
	svc      Service
	groupTTL time.Duration
}

func (rs remoteService) clientAccess(ctx context.Context, _ *http.Request, hub, user string, ttl time.Duration) (string, string, error) {
	tok, err := rs.svc.ClientToken(ctx, hub, user, ttl)
	return rs.svc.ClientURL(hub), tok, err
}

// join uses GroupTTL for anonymous users too: the service keeps the state
// (bounded there), and drops expired memberships from open connections.
func (rs remoteService) join(ctx context.Context, c Caller, group string) error {
	return rs.svc.AddUserToGroup(ctx, c.Hub, group, c.User, rs.groupTTL)
}

func (rs remoteService) admit(string) error { return nil }

// Negotiator is the app negotiate endpoint, what the Azure Functions
// SignalRConnectionInfo binding does: it authenticates the caller, takes
// the user id from a claim, joins the user to the groups the config derives
// from its claims, and answers {"url","accessToken"} for the official
// clients to follow. Authorize applies the same rules to other endpoints
// mounted next to it with Handle.
type Negotiator struct {
	cfg     NegotiateConfig // defaults applied
	hubs    map[string]bool // served, by hubKey
	svc     service
	auth    authenticators
	groups  []*template.Claims
	origins origins
	o       options
	own     *http.ServeMux   // Handler's
	muxes   []*http.ServeMux // own, and the Server's when it has one
	refused *logLimiter
}

// NewNegotiator returns the negotiate endpoint of cfg (its Hubs, Negotiate,
// CORSOrigins and Limits, defaults applied to zero fields) for the service
// svc, e.g. a *signalr.Client for Azure SignalR (the built-in hub's Server
// has its own). Mount Handler.
func NewNegotiator(cfg Config, svc Service, opts ...Option) (*Negotiator, error) {
	cfg = cfg.withDefaults()
	if err := errors.Join(cfg.validateNegotiate()...); err != nil {
		return nil, err
	}
	o := defaultOptions()
	for _, f := range opts {
		f(&o)
	}
	return newNegotiator(cfg, remoteService{svc, cfg.Negotiate.GroupTTL}, o, nil)
}

// newNegotiator builds the endpoint from a valid cfg with defaults applied;
// its routes go on its own mux and on shared (the Server's), when given.
func newNegotiator(cfg Config, svc service, o options, shared *http.ServeMux) (*Negotiator, error) {
	n := &Negotiator{cfg: cfg.Negotiate, hubs: map[string]bool{}, svc: svc, origins: newOrigins(cfg.CORSOrigins, cfg.PublicURL),
		o: o, own: http.NewServeMux(), refused: newLogLimiter(time.Second)}
	n.muxes = []*http.ServeMux{n.own}
	if shared != nil {
		n.muxes = append(n.muxes, shared)
	}
	for _, h := range cfg.Hubs {
		n.hubs[hubKey(h)] = true
	}
	for _, g := range cfg.Negotiate.Groups {
		t, err := template.ParseClaims(g)
		if err != nil {
			return nil, err
		}
		n.groups = append(n.groups, t)
	}
	var err error
	if n.auth, err = newAuthenticators(cfg.Negotiate.Auth, o); err != nil {
		return nil, err
	}
	n.Handle("POST /negotiate", n)
	return n, nil
}

// Path is where the endpoint answers: {negotiate.path}/negotiate.
func (n *Negotiator) Path() string { return n.prefix() + "/negotiate" }

func (n *Negotiator) prefix() string { return strings.TrimRight(n.cfg.Path, "/") }

// Handle mounts h at pattern under the negotiate path, with the same CORS:
// Handle("GET /snapshot", h) serves GET {negotiate.path}/snapshot, on
// Handler and on the Server the Negotiator belongs to. The pattern is a
// http.ServeMux pattern without host ("[METHOD ]/path"); h decides who
// may call it, typically with Authorize. Call it before serving; like
// ServeMux.Handle it panics on a bad or conflicting pattern.
func (n *Negotiator) Handle(pattern string, h http.Handler) {
	method, path, ok := strings.Cut(strings.TrimSpace(pattern), " ")
	if !ok {
		method, path = "", method
	}
	path = strings.TrimSpace(path)
	if !strings.HasPrefix(path, "/") {
		panic(fmt.Sprintf("hub: Negotiator.Handle: pattern %q must be [METHOD ]/path", pattern))
	}
	full := n.prefix() + path
	if method != "" {
		full = method + " " + full
	}
	for _, m := range n.muxes {
		m.Handle(full, h)
	}
}

// Handler serves POST Path and what Handle mounted, with the configured
// CORS.
func (n *Negotiator) Handler() http.Handler { return withCORS(n.origins, n.own) }

// Caller is who Authorize let in: the hub asked for (lower-cased, as
// Azure SignalR names hubs), the user id (from the user claim, or a random
// "anonymous-…" one), the groups its claims grant, and whether it came
// without a token.
type Caller struct {
	Hub, User string
	Groups    []string
	Anonymous bool
}

// AuthError is a refused request: the HTTP status to answer, Azure
// SignalR's error code and a message safe to show the caller. Err, when
// set, is the reason, for logs only (it may quote the caller's input).
type AuthError struct {
	Status    int
	Code, Msg string
	Err       error
}

func (e *AuthError) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *AuthError) Unwrap() error { return e.Err }

// StatusOf is the HTTP status to answer for err: an *AuthError's Status,
// 200 for nil, 500 for anything else.
func StatusOf(err error) int {
	var ae *AuthError
	switch {
	case err == nil:
		return http.StatusOK
	case errors.As(err, &ae):
		return ae.Status
	}
	return http.StatusInternalServerError
}

// Authorize applies negotiate's rules to a request for hub (empty: the
// configured Negotiate.Hub): the hub must be a valid name (400), the
// configured one when Negotiate.Hub is set (403) and served (404); the
// caller must be anonymous where that is allowed, or be recognised by an
// identity provider (401; see authenticators: the platform's headers, a
// bearer token with a user claim, the app's webhook, whose 403, 502 and
// 503 pass through) with a usable user id (400). The groups are the ones
// the caller's claims grant, after those the webhook gave. Errors are *AuthError;
// answer them with Refuse.
func (n *Negotiator) Authorize(r *http.Request, hub string) (Caller, error) {
	if hub == "" {
		hub = n.cfg.Hub
	}
	switch {
	case hub == "":
		return Caller{}, &AuthError{Status: http.StatusBadRequest, Code: "Error.InvalidHub", Msg: "give a hub= query parameter"}
	case !validHub(hub):
		return Caller{}, &AuthError{Status: http.StatusBadRequest, Code: "Error.InvalidHub", Msg: "invalid hub name"}
	case n.cfg.Hub != "" && hubKey(hub) != hubKey(n.cfg.Hub):
		return Caller{}, &AuthError{Status: http.StatusForbidden, Code: "Error.Forbidden", Msg: "this endpoint does not serve that hub"}
	case !n.hubs[hubKey(hub)]:
		return Caller{}, &AuthError{Status: http.StatusNotFound, Code: "Error.Hub.NotExisted", Msg: "no such hub"}
	}
	id, err := n.auth.authenticate(r.Context(), r, hubKey(hub))
	if ae := (*AuthError)(nil); errors.As(err, &ae) {
		return Caller{}, ae
	} else if err != nil {
		return Caller{}, &AuthError{Status: http.StatusUnauthorized, Code: "Error.Unauthorized", Msg: "invalid token", Err: err}
	}
	c := Caller{Hub: hubKey(hub)}
	var claims map[string]any
	var given []string
	if id != nil {
		claims, given = id.claims, id.groups
		u, ok := id.user, true
		if u == "" {
			u, ok = wire.ScalarString(claims[n.cfg.UserClaim])
		}
		if !ok || u == "" {
			return Caller{}, &AuthError{Status: http.StatusUnauthorized, Code: "Error.Unauthorized", Msg: "invalid token",
				Err: errors.New("token has no " + n.cfg.UserClaim + " claim")}
		}
		if !validUser(u) {
			return Caller{}, &AuthError{Status: http.StatusBadRequest, Code: "Error.InvalidUser",
				Msg: "the user id must be 1-1024 characters, not . or .., without '/', '?', '#' or control characters"}
		}
		c.User = u
	} else {
		// Anonymous: a user id of its own, so that groups without claim
		// holes can still be joined per user.
		c.User, c.Anonymous = "anonymous-"+newID(), true
	}
	c.Groups = joinGroups(n.groups, claims, given...)
	return c, nil
}

// Refuse answers a request Authorize (or another check) refused: the
// status StatusOf gives, Azure SignalR's error body, and for 401 a
// WWW-Authenticate header. Refusals are logged at most once a second per
// error code (the reason at debug level), so that a flood of bad requests
// does not flood the log.
func (n *Negotiator) Refuse(w http.ResponseWriter, err error) {
	var ae *AuthError
	if !errors.As(err, &ae) {
		ae = &AuthError{Status: http.StatusInternalServerError, Code: "Error.Internal", Msg: "internal error", Err: err}
	}
	if ok, dropped := n.refused.allow(ae.Code, time.Now()); ok {
		n.o.log.Info("hub: negotiate refused", "status", ae.Status, "code", ae.Code, "suppressed", dropped)
		if ae.Err != nil {
			n.o.log.Debug("hub: negotiate refused: reason", "code", ae.Code, "err", ae.Err)
		}
	}
	if ae.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	writeError(w, ae.Status, ae.Code, ae.Msg)
}

// ServeHTTP answers one negotiate request.
func (n *Negotiator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hubs := r.URL.Query()["hub"]
	if len(hubs) > 1 {
		n.Refuse(w, &AuthError{Status: http.StatusBadRequest, Code: "Error.InvalidHub", Msg: "give one hub= query parameter"})
		return
	}
	hub := ""
	if len(hubs) == 1 {
		hub = hubs[0]
	}
	c, err := n.Authorize(r, hub)
	if err != nil {
		n.Refuse(w, err)
		return
	}
	if err := n.svc.admit(c.User); err != nil {
		status, code := http.StatusTooManyRequests, "Error.TooManyConnections"
		if errors.Is(err, errShuttingDown) {
			status, code = http.StatusServiceUnavailable, "Error.ShuttingDown"
		}
		n.Refuse(w, &AuthError{Status: status, Code: code, Msg: err.Error()})
		return
	}
	for _, g := range c.Groups {
		if err := n.svc.join(r.Context(), c, g); err != nil {
			n.o.log.Error("hub: negotiate: join group failed", "hub", c.Hub, "group", g, "err", err)
			writeError(w, http.StatusServiceUnavailable, "Error.Unavailable", "could not join the user's groups; try again")
			return
		}
	}
	u, tok, err := n.svc.clientAccess(r.Context(), r, c.Hub, c.User, n.cfg.TokenTTL)
	if err != nil {
		n.o.log.Error("hub: negotiate: client token failed", "hub", c.Hub, "err", err)
		writeError(w, http.StatusServiceUnavailable, "Error.Unavailable", "could not get a client token; try again")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, struct {
		URL         string `json:"url"`
		AccessToken string `json:"accessToken"`
	}{u, tok})
}

// joinGroups renders the group rules for claims (nil: anonymous, only rules
// without holes), valid names only, each once, after the groups given (an
// identity webhook's).
func joinGroups(rules []*template.Claims, claims map[string]any, given ...string) []string {
	var out []string
	seen := map[string]bool{}
	for _, g := range given {
		if validGroup(g) && !seen[g] {
			seen[g] = true
			out = append(out, g)
		}
	}
	for _, t := range rules {
		for _, g := range t.Render(claims) {
			if validGroup(g) && !seen[g] {
				seen[g] = true
				out = append(out, g)
			}
		}
	}
	return out
}
