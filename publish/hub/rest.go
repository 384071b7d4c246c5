package hub

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
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

func (s *Server) restRoutes(mux *http.ServeMux) {
	health := func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }
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
	route("GET "+v1+"/connections/{connectionId}", s.exists(scopeConn))
	route("GET "+v2+"/connections/{connectionId}", s.exists(scopeConn))
	route("GET "+v1+"/groups/{group}", s.exists(scopeGroup))
	route("GET "+v2+"/groups/{group}", s.exists(scopeGroup))
	route("GET "+v1+"/users/{user}", s.exists(scopeUser))
	route("GET "+v2+"/users/{user}", s.exists(scopeUser))
	route("GET "+v1+"/groups/{group}/users/{user}", s.userInGroup)
	route("GET "+v1+"/users/{user}/groups/{group}", s.userInGroup)
	route("GET "+v2+"/users/{user}/groups/{group}", s.userInGroup)

	// Closing connections.
	route("DELETE "+v1+"/connections/{connectionId}", s.closeConns(scopeConn, http.StatusAccepted))
	route("DELETE "+v2+"/connections/{connectionId}", s.closeConns(scopeConn, http.StatusOK))
	route("POST "+v2+"/:closeConnections", s.closeConns(scopeAll, http.StatusNoContent))
	route("POST "+v2+"/groups/{group}/:closeConnections", s.closeConns(scopeGroup, http.StatusNoContent))
	route("POST "+v2+"/users/{user}/:closeConnections", s.closeConns(scopeUser, http.StatusNoContent))

	// Connection membership (the v1 swagger answers 202, 2022-06-01 200).
	route("PUT "+v1+"/groups/{group}/connections/{connectionId}", s.addConnToGroup(http.StatusAccepted))
	route("PUT "+v1+"/connections/{connectionId}/groups/{group}", s.addConnToGroup(http.StatusAccepted))
	route("PUT "+v2+"/groups/{group}/connections/{connectionId}", s.addConnToGroup(http.StatusOK))
	route("DELETE "+v1+"/groups/{group}/connections/{connectionId}", s.removeConnFromGroup(http.StatusAccepted))
	route("DELETE "+v1+"/connections/{connectionId}/groups/{group}", s.removeConnFromGroup(http.StatusAccepted))
	route("DELETE "+v2+"/groups/{group}/connections/{connectionId}", s.removeConnFromGroup(http.StatusOK))
	route("DELETE "+v2+"/connections/{connectionId}/groups", s.removeConnFromGroup(http.StatusOK))

	// User membership.
	route("PUT "+v1+"/groups/{group}/users/{user}", s.addUserToGroup(http.StatusAccepted))
	route("PUT "+v1+"/users/{user}/groups/{group}", s.addUserToGroup(http.StatusAccepted))
	route("PUT "+v2+"/users/{user}/groups/{group}", s.addUserToGroup(http.StatusOK))
	route("DELETE "+v1+"/groups/{group}/users/{user}", s.removeUserFromGroup(http.StatusAccepted))
	route("DELETE "+v1+"/users/{user}/groups/{group}", s.removeUserFromGroup(http.StatusAccepted))
	route("DELETE "+v2+"/users/{user}/groups/{group}", s.removeUserFromGroup(http.StatusNoContent))
	route("DELETE "+v1+"/users/{user}/groups", s.removeUserFromGroup(http.StatusAccepted))
	route("DELETE "+v2+"/users/{user}/groups", s.removeUserFromGroup(http.StatusNoContent))

	// 2023-07-01 and 2024-12-01 additions.
	route("POST "+v2+"/:generateToken", s.generateToken)
	route("GET "+v2+"/groups/{group}/connections", s.listGroup)
}

// restAuth resolves {hub} (with ?application= as prefix, lower-cased: hub
// names are case-insensitive), checks the access-key JWT, whose aud must
// be this request's URL at the hub's endpoint, and answers 404 for a hub
// that is not served.
func (s *Server) restAuth(h restHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hub := r.PathValue("hub")
		if !validHub(hub) {
			writeError(w, http.StatusBadRequest, "Error.InvalidHub", "invalid hub name")
			return
		}
		if app := r.URL.Query().Get("application"); app != "" {
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
		if _, err := verifyAccessToken(bearer(r, false), []byte(s.key), want, s.cfg.Limits.MaxRESTTokenTTL); err != nil {
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

func scopeOf(r *http.Request, kind scopeKind) scope {
	sc := scope{kind: kind, excluded: r.URL.Query()["excluded"]}
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
		body, ok := s.readBody(w, r)
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
		s.deliver(hub, scopeOf(r, kind), appendInvocation(nil, m.Target, m.Arguments))
		w.WriteHeader(http.StatusAccepted)
	}
}

// deliver queues one record for every connection in sc. It never blocks:
// a client whose queue is full is dropped instead.
func (s *Server) deliver(hub string, sc scope, frame []byte) {
	s.reg.each(hub, sc, time.Now(), func(c *conn) { c.send(frame) })
}

// readBody reads at most the body limit; a larger body gets 413.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	tooLarge := func() ([]byte, bool) {
		writeError(w, http.StatusRequestEntityTooLarge, "Error.PayloadTooLarge",
			"body is over "+strconv.Itoa(s.o.maxBodyBytes)+" bytes")
		return nil, false
	}
	if r.ContentLength > int64(s.o.maxBodyBytes) {
		return tooLarge()
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.o.maxBodyBytes)))
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

func (s *Server) exists(kind scopeKind) restHandler {
	codes := map[scopeKind]string{scopeConn: "Warning.Connection.NotExisted", scopeGroup: "Warning.Group.NotExisted", scopeUser: "Warning.User.NotExisted"}
	return func(w http.ResponseWriter, r *http.Request, hub string) {
		if s.reg.count(hub, scopeOf(r, kind), time.Now()) == 0 {
			writeError(w, http.StatusNotFound, codes[kind], "not found")
			return
		}
		w.WriteHeader(http.StatusOK)
	}
}

func (s *Server) userInGroup(w http.ResponseWriter, r *http.Request, hub string) {
	if !s.reg.userInGroup(hub, r.PathValue("group"), r.PathValue("user"), time.Now()) {
		writeError(w, http.StatusNotFound, "Info.User.NotInGroup", "the user is not in the group")
		return
	}
	w.WriteHeader(http.StatusOK)
}

// closeConns sends the selected clients a Close message. allowReconnect is
// true unless ?allowReconnect=false, as Azure and its emulator do: a closed
// client with withAutomaticReconnect negotiates again.
func (s *Server) closeConns(kind scopeKind, status int) restHandler {
	return func(w http.ResponseWriter, r *http.Request, hub string) {
		q := r.URL.Query()
		allow := q.Get("allowReconnect") != "false"
		sc := scopeOf(r, kind)
		if kind == scopeConn && s.reg.count(hub, sc, time.Now()) == 0 {
			writeError(w, http.StatusNotFound, "Warning.Connection.NotExisted", "no such connection")
			return
		}
		s.reg.each(hub, sc, time.Now(), func(c *conn) { c.close(q.Get("reason"), allow) })
		w.WriteHeader(status)
	}
}

func (s *Server) addConnToGroup(status int) restHandler {
	return func(w http.ResponseWriter, r *http.Request, hub string) {
		if !s.reg.addConnToGroup(hub, r.PathValue("group"), r.PathValue("connectionId")) {
			writeError(w, http.StatusNotFound, "Error.Connection.NotExisted", "no such connection")
			return
		}
		w.WriteHeader(status)
	}
}

func (s *Server) removeConnFromGroup(status int) restHandler {
	return func(w http.ResponseWriter, r *http.Request, hub string) {
		if !s.reg.removeConnFromGroups(hub, r.PathValue("group"), r.PathValue("connectionId")) {
			writeError(w, http.StatusNotFound, "Warning.Connection.NotExisted", "no such connection")
			return
		}
		w.WriteHeader(status)
	}
}

// userGroupTTL is how long a user added to a group without ?ttl= stays:
// Azure SignalR's "1 year at most".
const userGroupTTL = 365 * 24 * time.Hour

// addUserToGroup adds the user to the group for ?ttl= seconds (none: a
// year); ttl=0 adds only the user's open connections, as Azure does.
func (s *Server) addUserToGroup(status int) restHandler {
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
		if ttl == 0 {
			s.reg.addUserConnsToGroup(hub, group, user)
		} else {
			s.reg.addUserToGroup(hub, group, user, ttl, false, time.Now())
		}
		w.WriteHeader(status)
	}
}

// removeUserFromGroup removes the user from {group}, or from all groups on
// the routes without one.
func (s *Server) removeUserFromGroup(status int) restHandler {
	return func(w http.ResponseWriter, r *http.Request, hub string) {
		s.reg.removeUserFromGroups(hub, r.PathValue("group"), r.PathValue("user"))
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

// listGroup lists a group's connections (2024-12-01), in one page.
func (s *Server) listGroup(w http.ResponseWriter, r *http.Request, hub string) {
	writeJSON(w, http.StatusOK, struct {
		Value []connInfo `json:"value"`
	}{s.reg.list(hub, scopeOf(r, scopeGroup), time.Now())})
}
