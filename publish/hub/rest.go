package hub

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The data-plane REST API of Azure SignalR Service, v1 and 2022-06-01
// routes (Azure/azure-signalr docs/swagger), with the service's status codes.

var hubRe = regexp.MustCompile("^[A-Za-z][A-Za-z0-9_`,.\\[\\]]{0,127}$")

func validHub(h string) bool { return hubRe.MatchString(h) }

func validGroup(g string) bool {
	return g != "" && len(g) <= 1024 && strings.TrimSpace(g) != ""
}

// restHandler is one REST route: the hub is resolved and the caller
// authenticated before it runs.
type restHandler func(w http.ResponseWriter, r *http.Request, hub string)

// APIVersions are the api-version values the REST API accepts on its
// non-v1 routes (Azure/azure-signalr docs/swagger and the SDKs).
var APIVersions = []string{"2022-06-01", "2022-11-01", "2023-07-01", "2024-01-01", "2024-12-01"}

// checkAPIVersion answers 400 naming the supported versions when a non-v1
// route has no or an unknown api-version.
func checkAPIVersion(w http.ResponseWriter, r *http.Request) bool {
	if strings.HasPrefix(r.URL.Path, "/api/v1/") {
		return true
	}
	vs := queryValues(r, "api-version")
	if len(vs) == 1 && slices.Contains(APIVersions, vs[0]) {
		return true
	}
	msg := "api-version is required; supported versions: " + strings.Join(APIVersions, ", ")
	if len(vs) > 0 {
		msg = "api-version " + strconv.Quote(truncate(strings.Join(vs, ","), 64)) + " is not supported; supported versions: " + strings.Join(APIVersions, ", ")
	}
	writeError(w, http.StatusBadRequest, "Error.InvalidApiVersion", msg)
	return false
}

func (s *Server) restRoutes(mux *http.ServeMux) {
	health := func(w http.ResponseWriter, r *http.Request) {
		if checkAPIVersion(w, r) {
			w.WriteHeader(http.StatusOK)
		}
	}
	mux.HandleFunc("GET /api/v1/health", health)
	mux.HandleFunc("GET /api/health", health)

	route := func(pattern string, h restHandler) { mux.Handle(pattern, s.restAuth(h)) }
	const v1, v2 = "/api/v1/hubs/{hub}", "/api/hubs/{hub}"

	// Sends.
	route("POST "+v1, s.send(scopeAll))
	route("POST "+v2+"/:send", s.send(scopeAll))
	route("POST "+v1+"/groups/{group}", s.send(scopeGroup))
	route("POST "+v2+"/groups/{group}/:send", s.send(scopeGroup))
	route("POST "+v1+"/users/{user}", s.send(scopeUser))
	route("POST "+v2+"/users/{user}/:send", s.send(scopeUser))
	route("POST "+v1+"/connections/{connectionId}", s.send(scopeConn))
	route("POST "+v2+"/connections/{connectionId}/:send", s.send(scopeConn))

	// Existence checks (HEAD, and GET as the SDK also uses).
	route("GET "+v1+"/connections/{connectionId}", s.restExists(scopeConn))
	route("GET "+v2+"/connections/{connectionId}", s.restExists(scopeConn))
	route("GET "+v1+"/groups/{group}", s.restExists(scopeGroup))
	route("GET "+v2+"/groups/{group}", s.restExists(scopeGroup))
	route("GET "+v1+"/users/{user}", s.restExists(scopeUser))
	route("GET "+v2+"/users/{user}", s.restExists(scopeUser))
	route("GET "+v1+"/groups/{group}/users/{user}", s.restUserInGroup)
	route("GET "+v1+"/users/{user}/groups/{group}", s.restUserInGroup)
	route("GET "+v2+"/users/{user}/groups/{group}", s.restUserInGroup)

	// Closing connections.
	route("DELETE "+v1+"/connections/{connectionId}", s.restCloseConns(scopeConn, http.StatusAccepted))
	route("DELETE "+v2+"/connections/{connectionId}", s.restCloseConns(scopeConn, http.StatusOK))
	route("POST "+v2+"/:closeConnections", s.restCloseConns(scopeAll, http.StatusNoContent))
	route("POST "+v2+"/groups/{group}/:closeConnections", s.restCloseConns(scopeGroup, http.StatusNoContent))
	route("POST "+v2+"/users/{user}/:closeConnections", s.restCloseConns(scopeUser, http.StatusNoContent))

	// Connection membership (200, or 404 for a connection not open).
	route("PUT "+v1+"/groups/{group}/connections/{connectionId}", s.restAddConnToGroup)
	route("PUT "+v1+"/connections/{connectionId}/groups/{group}", s.restAddConnToGroup)
	route("PUT "+v2+"/groups/{group}/connections/{connectionId}", s.restAddConnToGroup)
	route("DELETE "+v1+"/groups/{group}/connections/{connectionId}", s.restRemoveConnFromGroup)
	route("DELETE "+v1+"/connections/{connectionId}/groups/{group}", s.restRemoveConnFromGroup)
	route("DELETE "+v2+"/groups/{group}/connections/{connectionId}", s.restRemoveConnFromGroup)
	route("DELETE "+v2+"/connections/{connectionId}/groups", s.restRemoveConnFromGroup)

	// User membership (the v1 swagger answers 202, 2022-06-01 200 and 204).
	route("PUT "+v1+"/groups/{group}/users/{user}", s.restAddUserToGroup(http.StatusAccepted))
	route("PUT "+v1+"/users/{user}/groups/{group}", s.restAddUserToGroup(http.StatusAccepted))
	route("PUT "+v2+"/users/{user}/groups/{group}", s.restAddUserToGroup(http.StatusOK))
	route("DELETE "+v1+"/groups/{group}/users/{user}", s.restRemoveUserFromGroup(http.StatusAccepted))
	route("DELETE "+v1+"/users/{user}/groups/{group}", s.restRemoveUserFromGroup(http.StatusAccepted))
	route("DELETE "+v2+"/users/{user}/groups/{group}", s.restRemoveUserFromGroup(http.StatusNoContent))
	route("DELETE "+v1+"/users/{user}/groups", s.restRemoveUserFromGroup(http.StatusAccepted))
	route("DELETE "+v2+"/users/{user}/groups", s.restRemoveUserFromGroup(http.StatusNoContent))

	// 2023-07-01 and 2024-12-01 additions.
	route("POST "+v2+"/:generateToken", s.generateToken)
	route("GET "+v2+"/groups/{group}/connections", s.restListGroup)
}

// restAuth checks api-version, resolves {hub} (with ?application= as
// prefix, lower-cased: hub names are case-insensitive), checks the
// access-key JWT, whose aud must be this request's URL at the hub's
// endpoint, and answers 404 for a hub that is not served.
func (s *Server) restAuth(h restHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !checkAPIVersion(w, r) {
			return
		}
		hub := r.PathValue("hub")
		if !validHub(hub) {
			writeError(w, http.StatusBadRequest, "Error.InvalidHub", "invalid hub name")
			return
		}
		if app := firstOf(queryValues(r, "application")); app != "" {
			if !validHub(app) {
				writeError(w, http.StatusBadRequest, "Error.InvalidApplication", "invalid application name")
				return
			}
			hub = app + "_" + hub
		}
		if g := r.PathValue("group"); r.Pattern != "" && strings.Contains(r.Pattern, "{group}") && !validGroup(g) {
			writeError(w, http.StatusBadRequest, "Error.InvalidGroup", "group names are 1-1024 characters, not all blank")
			return
		}
		want := s.endpoint(r).audience(r.URL.EscapedPath())
		if err := s.restTokens.verify(bearer(r, false), []byte(s.key), want, s.cfg.Limits.MaxRESTTokenTTL); err != nil {
			s.refuse(w, "REST call", http.StatusUnauthorized, "Error.Unauthorized", "invalid token", err)
			return
		}
		if !s.reg.served(hub) {
			writeError(w, http.StatusNotFound, "Error.Hub.NotExisted", "no such hub")
			return
		}
		h(w, r, hubKey(hub))
	})
}

// backplaneUnavailable is the answer to a request the backplane could not
// serve; the cause (Redis's address, its error) goes to the log only.
const backplaneUnavailable = "the hub's backplane is unavailable; try again"

// unavailable answers a request the backplane could not serve (Redis
// down): 503, which the SDKs and clients retry, with a generic message;
// the cause is logged, at most once a second.
func (s *Server) unavailable(w http.ResponseWriter, what string, err error) {
	if ok, dropped := s.refused.allow("Error.Unavailable", time.Now()); ok {
		s.o.log.Warn("hub: "+what+": backplane unavailable", "err", err, "suppressed", dropped)
	}
	writeError(w, http.StatusServiceUnavailable, "Error.Unavailable", backplaneUnavailable)
}

func scopeOf(r *http.Request, kind scopeKind) scope {
	sc := scope{kind: kind, excluded: queryValues(r, "excluded")}
	switch kind {
	case scopeGroup:
		sc.name = r.PathValue("group")
	case scopeUser:
		sc.name = r.PathValue("user")
	case scopeConn:
		sc.name = r.PathValue("connectionId")
	}
	return sc
}

// restMessage is a send body. encoding/json matches keys case-insensitively,
// so the .NET SDK's "Target"/"Arguments" work too.
type restMessage struct {
	Target    string            `json:"target"`
	Arguments []json.RawMessage `json:"arguments"`
}

func (s *Server) send(kind scopeKind) restHandler {
	return func(w http.ResponseWriter, r *http.Request, hub string) {
		if ct := r.Header.Get("Content-Type"); ct != "" {
			if mt, _, _ := mime.ParseMediaType(ct); mt != "application/json" && mt != "text/json" {
				writeError(w, http.StatusUnsupportedMediaType, "Error.UnsupportedMediaType", "only application/json bodies are supported")
				return
			}
		}
		bp := bodyBufs.Get().(*bytes.Buffer)
		defer func() {
			if bp.Cap() <= 64<<10 {
				bodyBufs.Put(bp)
			}
		}()
		// The body is decoded (copied) before send returns: its buffer
		// goes back to the pool.
		body, ok := s.readBody(w, r, bp)
		if !ok {
			return
		}
		var m restMessage
		if err := json.Unmarshal(body, &m); err != nil {
			writeError(w, http.StatusBadRequest, "Error.InvalidBody", "body is not a JSON message: "+err.Error())
			return
		}
		if m.Target == "" {
			writeError(w, http.StatusBadRequest, "Error.InvalidBody", "target is required")
			return
		}
		if err := s.deliver(r.Context(), hub, scopeOf(r, kind), newOutbound(m.Target, m.Arguments)); err != nil {
			s.unavailable(w, "REST call", err)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}
}

// queryValues is r.URL.Query()[key] (the same pairs skipped: with a
// semicolon or a bad escape) without parsing the whole query into a map:
// a publish asks for three keys, and the map was a kilobyte of garbage per
// call. A value with nothing to unescape is a piece of the URL, not a copy.
func queryValues(r *http.Request, key string) []string {
	var out []string
	for q := r.URL.RawQuery; q != ""; {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		if kv == "" || strings.Contains(kv, ";") {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		if uk, err := url.QueryUnescape(k); err != nil || uk != key {
			continue
		}
		if uv, err := url.QueryUnescape(v); err == nil {
			out = append(out, uv)
		}
	}
	return out
}

func firstOf(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// readBody reads at most the body limit; a larger body gets 413.
// bodyBufs are the buffers send reads bodies into.
var bodyBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readBody reads the body into buf (emptied first).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer) ([]byte, bool) {
	tooLarge := func() ([]byte, bool) {
		writeError(w, http.StatusRequestEntityTooLarge, "Error.PayloadTooLarge",
			"body is over "+strconv.Itoa(s.o.maxBodyBytes)+" bytes")
		return nil, false
	}
	if r.ContentLength > int64(s.o.maxBodyBytes) {
		return tooLarge()
	}
	buf.Reset()
	if r.ContentLength > 0 {
		// The declared length sizes the buffer only up to what a publish
		// usually is; past that it grows as the body arrives.
		buf.Grow(int(min(r.ContentLength, 64<<10)))
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, int64(s.o.maxBodyBytes)))
	b := buf.Bytes()
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLarge()
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "Error.InvalidBody", "reading body: "+err.Error())
		return nil, false
	}
	return b, true
}

func (s *Server) restExists(kind scopeKind) restHandler {
	codes := map[scopeKind]string{scopeConn: "Warning.Connection.NotExisted", scopeGroup: "Warning.Group.NotExisted", scopeUser: "Warning.User.NotExisted"}
	return func(w http.ResponseWriter, r *http.Request, hub string) {
		ok, err := s.exists(r.Context(), hub, scopeOf(r, kind))
		switch {
		case err != nil:
			s.unavailable(w, "REST call", err)
		case !ok:
			writeError(w, http.StatusNotFound, codes[kind], "not found")
		default:
			w.WriteHeader(http.StatusOK)
		}
	}
}

func (s *Server) restUserInGroup(w http.ResponseWriter, r *http.Request, hub string) {
	ok, err := s.userInGroup(r.Context(), hub, r.PathValue("group"), r.PathValue("user"))
	switch {
	case err != nil:
		s.unavailable(w, "REST call", err)
	case !ok:
		writeError(w, http.StatusNotFound, "Info.User.NotInGroup", "the user is not in the group")
	default:
		w.WriteHeader(http.StatusOK)
	}
}

// closeConns sends the selected clients a Close message. allowReconnect is
// true unless ?allowReconnect=false, as Azure and its emulator do: a closed
// client with withAutomaticReconnect negotiates again.
func (s *Server) restCloseConns(kind scopeKind, status int) restHandler {
	return func(w http.ResponseWriter, r *http.Request, hub string) {
		q := r.URL.Query()
		allow := q.Get("allowReconnect") != "false"
		sc := scopeOf(r, kind)
		if kind == scopeConn {
			ok, err := s.exists(r.Context(), hub, sc)
			if err != nil {
				s.unavailable(w, "REST call", err)
				return
			}
			if !ok {
				writeError(w, http.StatusNotFound, "Warning.Connection.NotExisted", "no such connection")
				return
			}
		}
		if err := s.closeConns(r.Context(), hub, sc, q.Get("reason"), allow); err != nil {
			s.unavailable(w, "REST call", err)
			return
		}
		w.WriteHeader(status)
	}
}

func (s *Server) restAddConnToGroup(w http.ResponseWriter, r *http.Request, hub string) {
	ok, err := s.addConnToGroup(r.Context(), hub, r.PathValue("group"), r.PathValue("connectionId"))
	switch {
	case err != nil:
		s.unavailable(w, "REST call", err)
	case !ok:
		writeError(w, http.StatusNotFound, "Error.Connection.NotExisted", "no such connection")
	default:
		w.WriteHeader(http.StatusOK)
	}
}

func (s *Server) restRemoveConnFromGroup(w http.ResponseWriter, r *http.Request, hub string) {
	ok, err := s.removeConnFromGroups(r.Context(), hub, r.PathValue("group"), r.PathValue("connectionId"))
	switch {
	case err != nil:
		s.unavailable(w, "REST call", err)
	case !ok:
		writeError(w, http.StatusNotFound, "Warning.Connection.NotExisted", "no such connection")
	default:
		w.WriteHeader(http.StatusOK)
	}
}

// userGroupTTL is how long a user added to a group without ?ttl= stays:
// Azure SignalR's "1 year at most".
const userGroupTTL = 365 * 24 * time.Hour

// addUserToGroup adds the user to the group for ?ttl= seconds (none: a
// year); ttl=0 adds only the user's open connections, as Azure does.
func (s *Server) restAddUserToGroup(status int) restHandler {
	return func(w http.ResponseWriter, r *http.Request, hub string) {
		ttl := userGroupTTL
		if v := r.URL.Query().Get("ttl"); v != "" {
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil || n < 0 {
				writeError(w, http.StatusBadRequest, "Error.InvalidTTL", "ttl is a number of seconds")
				return
			}
			ttl = min(time.Duration(n)*time.Second, userGroupTTL)
		}
		group, user := r.PathValue("group"), r.PathValue("user")
		var err error
		if ttl == 0 {
			err = s.addUserConnsToGroup(r.Context(), hub, group, user)
		} else {
			err = s.addUserToGroup(r.Context(), hub, group, user, ttl, false)
		}
		if err != nil {
			s.unavailable(w, "REST call", err)
			return
		}
		w.WriteHeader(status)
	}
}

// removeUserFromGroup removes the user from {group}, or from all groups on
// the routes without one.
func (s *Server) restRemoveUserFromGroup(status int) restHandler {
	return func(w http.ResponseWriter, r *http.Request, hub string) {
		if err := s.removeUserFromGroups(r.Context(), hub, r.PathValue("group"), r.PathValue("user")); err != nil {
			s.unavailable(w, "REST call", err)
			return
		}
		w.WriteHeader(status)
	}
}

// generateToken mints a client token (what services without a key use).
func (s *Server) generateToken(w http.ResponseWriter, r *http.Request, hub string) {
	q := r.URL.Query()
	minutes := int64(60)
	maxMinutes := int64(s.cfg.Limits.MaxClientTokenTTL / time.Minute)
	if v := q.Get("minutesToExpire"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 || n > maxMinutes {
			writeError(w, http.StatusBadRequest, "Error.InvalidArgument", "minutesToExpire is a number of minutes, 1 to "+strconv.FormatInt(maxMinutes, 10))
			return
		}
		minutes = n
	}
	minutes = min(minutes, maxMinutes)
	user := q.Get("userId")
	if user != "" && !validUser(user) {
		writeError(w, http.StatusBadRequest, "Error.InvalidArgument", "userId must be at most 1024 characters without '/', '?', '#' or control characters")
		return
	}
	u := s.endpoint(r).base() + "/client/?hub=" + url.QueryEscape(hub)
	tok, err := signAccessToken(s.key, u, user, time.Duration(minutes)*time.Minute)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "Error.Internal", "cannot sign token")
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Token string `json:"token"`
	}{tok})
}

// Paging of the group listing (2024-12-01): maxpagesize is 1 to
// maxPageSize.
const maxPageSize = 200

// listGroup lists a group's connections (2024-12-01), sorted by connection
// id, in pages of maxpagesize (default and at most 200), at most top in
// all; nextLink (with continuationToken) fetches the next page.
func (s *Server) restListGroup(w http.ResponseWriter, r *http.Request, hub string) {
	q := r.URL.Query()
	size, top := maxPageSize, -1
	bad := func(msg string) { writeError(w, http.StatusBadRequest, "Error.InvalidArgument", msg) }
	if v := q.Get("maxpagesize"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			bad("maxpagesize is 1 to " + strconv.Itoa(maxPageSize))
			return
		}
		size = n
	}
	if v := q.Get("top"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			bad("top is a positive number")
			return
		}
		top = n
	}
	after := ""
	if v := q.Get("continuationToken"); v != "" {
		tok, err := parsePageToken(v)
		if err != nil {
			bad("continuationToken is not one this hub issued")
			return
		}
		after, top = tok.After, tok.Left
	}
	all, err := s.listGroup(r.Context(), hub, r.PathValue("group"))
	if err != nil {
		s.unavailable(w, "REST call", err)
		return
	}
	i := 0
	if after != "" {
		i = sort.Search(len(all), func(i int) bool { return all[i].ConnectionID > after })
	}
	page := all[i:]
	n := size
	if top >= 0 {
		n = min(n, top)
	}
	more := len(page) > n
	page = page[:min(n, len(page))]
	resp := struct {
		Value    []connInfo `json:"value"`
		NextLink string     `json:"nextLink,omitempty"`
	}{Value: page}
	if left := top - len(page); more && len(page) > 0 && (top < 0 || left > 0) {
		if top < 0 {
			left = -1
		}
		nq := url.Values{"api-version": q["api-version"], "maxpagesize": {strconv.Itoa(size)},
			"continuationToken": {pageToken{After: page[len(page)-1].ConnectionID, Left: left}.String()}}
		if app := q.Get("application"); app != "" {
			nq.Set("application", app)
		}
		resp.NextLink = s.endpoint(r).base() + r.URL.EscapedPath() + "?" + nq.Encode()
	}
	writeJSON(w, http.StatusOK, resp)
}

// pageToken is where the next page of a listing starts: after the id
// After, with Left items at most (-1: no bound).
type pageToken struct {
	After string `json:"a"`
	Left  int    `json:"l"`
}

func (p pageToken) String() string {
	b, _ := json.Marshal(p)
	return base64.RawURLEncoding.EncodeToString(b)
}

func parsePageToken(s string) (pageToken, error) {
	var p pageToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &p)
	}
	if err == nil && (p.After == "" || p.Left < -1 || p.Left == 0) {
		err = errors.New("bad token")
	}
	return p, err
}
