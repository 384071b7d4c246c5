package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// clientNegotiate answers POST /client/negotiate?hub=..&negotiateVersion=1,
// the second hop of the official clients (after the app negotiate).
func (s *Server) clientNegotiate(w http.ResponseWriter, r *http.Request) {
	hub, ok := s.queryHub(w, r)
	if !ok {
		return
	}
	claims, err := verifyAccessToken(bearer(r, true), []byte(s.key), s.clientAudience(r, hub), s.cfg.Limits.MaxClientTokenTTL)
	if err != nil {
		s.refuse(w, "client negotiate", http.StatusUnauthorized, "Error.Unauthorized", "invalid token", err)
		return
	}
	user := userOf(claims)
	if err := s.reg.admit(user); err != nil {
		s.refuse(w, "client negotiate", http.StatusTooManyRequests, "Error.TooManyConnections", err.Error(), err)
		return
	}
	q := r.URL.Query()
	v, _ := strconv.Atoi(q.Get("negotiateVersion"))
	// Stateful reconnect is offered only to clients that ask: a client
	// that did not ask fails when the answer has it.
	stateful := q.Get("useStatefulReconnect") == "true" && !s.cfg.StatefulReconnect.Disabled
	id, token := newID(), newID()
	key := token
	if v < 1 {
		key = id // version 0 clients connect with id=connectionId
	}
	p := pendingConn{id: id, hub: hubKey(hub), user: user, expires: time.Now().Add(s.o.connectTokenTTL), stateful: stateful}
	if err := s.putPending(r.Context(), key, p); err != nil {
		if errors.Is(err, errTooManyConns) {
			s.refuse(w, "client negotiate", http.StatusTooManyRequests, "Error.TooManyConnections", err.Error(), err)
		} else {
			s.unavailable(w, "client negotiate", err)
		}
		return
	}
	resp := struct {
		NegotiateVersion     int                `json:"negotiateVersion"`
		ConnectionID         string             `json:"connectionId"`
		ConnectionToken      string             `json:"connectionToken,omitempty"`
		AvailableTransports  []transportOffered `json:"availableTransports"`
		UseStatefulReconnect bool               `json:"useStatefulReconnect,omitempty"`
	}{ConnectionID: id, AvailableTransports: s.offered, UseStatefulReconnect: stateful}
	if v >= 1 {
		resp.NegotiateVersion, resp.ConnectionToken = 1, token
	}
	writeJSON(w, http.StatusOK, resp)
}

// transportOffered is one entry of negotiate's availableTransports.
type transportOffered struct {
	Transport       string   `json:"transport"`
	TransferFormats []string `json:"transferFormats"`
}

// offeredTransports lists the enabled transports in the configured order
// (the clients try them in that order): Server-Sent Events carry text only,
// so MessagePack clients skip it.
func offeredTransports(names []string) []transportOffered {
	var out []transportOffered
	for _, n := range names {
		f := []string{"Text", "Binary"}
		if n == TransportServerSentEvents {
			f = []string{"Text"}
		}
		out = append(out, transportOffered{n, f})
	}
	return out
}

func (s *Server) clientAudience(r *http.Request, hub string) audience {
	a := s.endpoint(r).audience("/client")
	a.hub = hub
	return a
}

// queryHub reads and checks ?hub=; it answers 400 (not exactly one valid
// name) or 404 (not served) itself when it fails.
func (s *Server) queryHub(w http.ResponseWriter, r *http.Request) (string, bool) {
	hs := r.URL.Query()["hub"]
	if len(hs) != 1 || !validHub(hs[0]) {
		writeError(w, http.StatusBadRequest, "Error.InvalidHub", "give exactly one valid hub= query parameter")
		return "", false
	}
	if !s.reg.served(hs[0]) {
		writeError(w, http.StatusNotFound, "Error.Hub.NotExisted", "no such hub")
		return "", false
	}
	return hs[0], true
}

// clientCaller checks what every request of a client transport needs: a
// served hub, an allowed Origin (browsers send their page's; a page the
// CORS settings do not allow must not use a token it got hold of, which an
// anonymous negotiate hands to anyone) and a valid client token. It
// answers the refusal itself.
func (s *Server) clientCaller(w http.ResponseWriter, r *http.Request) (hub, user string, ok bool) {
	hub, ok = s.queryHub(w, r)
	if !ok {
		return "", "", false
	}
	if o := r.Header.Get("Origin"); o != "" && !s.origins.allows(o) {
		s.refuse(w, "client connect", http.StatusForbidden, "Error.Forbidden.Origin", "origin not allowed", errors.New("origin "+truncate(o, 100)))
		return "", "", false
	}
	// Browsers cannot set headers on WebSockets and EventSource: the token
	// comes in access_token there. Other requests carry the header.
	claims, err := verifyAccessToken(bearer(r, r.Method == http.MethodGet), []byte(s.key), s.clientAudience(r, hub), s.cfg.Limits.MaxClientTokenTTL)
	if err != nil {
		s.refuse(w, "client connect", http.StatusUnauthorized, "Error.Unauthorized", "invalid token", err)
		return "", "", false
	}
	return hubKey(hub), userOf(claims), true
}

// clientConnect serves GET /client/?hub=..&id=..: a WebSocket upgrade, a
// Server-Sent Events stream (Accept: text/event-stream) or a long poll.
// A WebSocket may also come without id (clients that skip negotiation),
// or with the id of a stateful connection whose transport dropped.
func (s *Server) clientConnect(w http.ResponseWriter, r *http.Request) {
	hub, user, ok := s.clientCaller(w, r)
	if !ok {
		return
	}
	kind := transportLongPolling
	switch {
	case isUpgrade(r):
		kind = transportWebSockets
	case headerHasToken(r.Header, "Accept", "text/event-stream"):
		kind = transportServerSentEvents
	}
	if !s.transports[kind] {
		writeError(w, http.StatusBadRequest, "Error.Transport", "the "+kind.String()+" transport is not enabled")
		return
	}
	id := r.URL.Query().Get("id")
	if id == "" {
		if kind != transportWebSockets {
			writeError(w, http.StatusBadRequest, "Error.Connection.NotExisted", "give the connection token in id=")
			return
		}
		token := newID()
		c, err := s.newConn(pendingConn{id: newID(), hub: hub, user: user}, token, kind)
		if err != nil {
			s.refuse(w, "client connect", http.StatusServiceUnavailable, "Error.TooManyConnections", err.Error(), err)
			return
		}
		s.serveWebSocket(w, r, c, false)
		return
	}
	// A connection already open under this token: the next long poll, or
	// a stateful WebSocket coming back.
	if c := s.reg.lookup(id, hub); c != nil {
		switch {
		case c.user != user:
			s.refuse(w, "client connect", http.StatusForbidden, "Error.Forbidden.User", "the connection belongs to another user", errWrongUser)
		case kind == transportLongPolling && c.kind == kind:
			s.servePoll(w, r, c)
		case kind == transportWebSockets && c.kind == kind && c.isStateful():
			s.serveWebSocket(w, r, c, true)
		default:
			// Used already (a WebSocket or a stream has it), and not one a
			// transport may come back to.
			writeError(w, http.StatusNotFound, "Error.Connection.NotExisted", errNoPending.Error())
		}
		return
	}
	p, err := s.takePending(r.Context(), id, hub, user)
	switch {
	case errors.Is(err, errWrongUser):
		// The connection is the negotiated user's only: ASP.NET Core
		// refuses a token of another user as well.
		s.refuse(w, "client connect", http.StatusForbidden, "Error.Forbidden.User", "the connection belongs to another user", err)
		return
	case errors.Is(err, errNoPending):
		writeError(w, http.StatusNotFound, "Error.Connection.NotExisted", err.Error())
		return
	case err != nil:
		s.unavailable(w, "client connect", err)
		return
	}
	c, err := s.newConn(p, id, kind)
	if err != nil {
		s.refuse(w, "client connect", http.StatusServiceUnavailable, "Error.TooManyConnections", err.Error(), err)
		return
	}
	switch kind {
	case transportWebSockets:
		s.serveWebSocket(w, r, c, false)
	case transportServerSentEvents:
		s.serveSSE(w, r, c)
	default:
		// The first poll answers at once with no data: it only opens the
		// connection (TransportProtocols.md).
		c.mu.Lock()
		c.detachedAt = time.Now()
		c.mu.Unlock()
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
	}
}

// newConn opens a connection negotiated as p under token, counted against
// the limits until Server.finish.
func (s *Server) newConn(p pendingConn, token string, kind transport) (*conn, error) {
	now := time.Now()
	newQueue := newSendQueue
	if kind == transportWebSockets {
		newQueue = newWakerQueue
	}
	ctx, cancel := context.WithCancelCause(s.baseCtx)
	// token may be a piece of the request's URL: cloned, so that the
	// connection does not keep the whole request line.
	c := &conn{id: p.id, token: strings.Clone(token), hub: p.hub, user: p.user, kind: kind, statefulOK: p.stateful,
		q: newQueue(s.o.sendQueueBytes), ctx: ctx, cancel: cancel, created: now, lastSeen: now, detachedAt: now,
		onHandshake: s.register}
	c.baseLog = s.o.log
	if err := s.reg.open(c); err != nil {
		cancel(err)
		return nil, err
	}
	return c, nil
}

// register makes a connection that finished its handshake reachable by
// sends; false once the hub is shutting down.
func (s *Server) register(c *conn) bool {
	if !s.reg.add(c) {
		return false
	}
	if s.bp != nil {
		s.bp.connected(c)
	}
	c.logger().Debug("hub: client connected", "user", c.user)
	return true
}

// finish forgets an ended connection (see conn.end).
func (s *Server) finish(c *conn) {
	if !c.isEnded() {
		return
	}
	if groups, ok := s.reg.closed(c); ok && s.bp != nil {
		s.bp.disconnected(c, groups)
	}
	cause := context.Cause(c.ctx)
	if errors.Is(cause, errSlowClient) {
		c.logger().Warn("hub: client disconnected: its send queue is full")
	} else {
		c.logger().Debug("hub: client disconnected", "cause", cause)
	}
}

func isUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for len(v) > 0 {
			var t string
			t, v, _ = cutByte(v, ',')
			if t, _, _ = cutByte(t, ';'); equalFoldTrim(t, token) {
				return true
			}
		}
	}
	return false
}

// serveSSE runs c's Server-Sent Events stream: every message goes out as
// the data of one event (lines of "data: "), and the client's messages
// arrive by POST (clientSend). The connection lasts as long as the stream.
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request, c *conn) {
	defer s.finish(c)
	if !s.track() {
		c.end(errServerClosed)
		writeError(w, http.StatusServiceUnavailable, "Error.ShuttingDown", "the hub is shutting down")
		return
	}
	defer s.wg.Done()
	rc := http.NewResponseController(w)
	// The stream outlives the server's read and write timeouts (a timed
	// out read would cancel the request); every write gets its own.
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // proxies must not hold events back
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		c.end(err)
		return
	}
	tctx, gen, detach, ok := c.attach(false)
	if !ok {
		return
	}
	defer detach()
	ctx, cancel := context.WithCancelCause(tctx)
	defer cancel(nil)
	stop := context.AfterFunc(r.Context(), func() { cancel(errors.New("client went away")) })
	defer stop()
	var ev []byte
	_, err := c.pump(ctx, gen, s.o.keepAlive, func(b []byte) error {
		ev = appendEvent(ev[:0], b)
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := w.Write(ev); err != nil {
			return err
		}
		return rc.Flush()
	})
	c.end(err)
}

// appendEvent appends b as one Server-Sent Event: a "data: " line per line
// of b (the client joins them with \n again), then an empty line.
func appendEvent(dst, b []byte) []byte {
	for {
		i := bytes.IndexAny(b, "\r\n")
		line := b
		if i >= 0 {
			line = b[:i]
		}
		dst = append(append(append(dst, "data: "...), line...), '\n')
		if i < 0 {
			break
		}
		if b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n' {
			i++
		}
		b = b[i+1:]
	}
	return append(dst, '\n')
}

// servePoll answers one long poll of c: what is queued, as soon as there
// is something, or an empty 200 after the poll timeout; 204 once the
// connection has ended.
func (s *Server) servePoll(w http.ResponseWriter, r *http.Request, c *conn) {
	defer s.finish(c)
	if !c.pollMu.TryLock() {
		writeError(w, http.StatusConflict, "Error.Conflict", "another poll of this connection is in progress")
		return
	}
	defer c.pollMu.Unlock()
	if !s.track() {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	defer s.wg.Done()
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Now().Add(s.o.pollTimeout + writeTimeout))
	tctx, gen, detach, ok := c.attach(false)
	if !ok {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	defer detach()
	timer := time.NewTimer(s.o.pollTimeout)
	defer timer.Stop()
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	for {
		frames, last, _, stale := c.q.take(gen, nil)
		if len(frames) > 0 || last {
			ct := "text/plain"
			if cd := c.codecNow(); cd != nil && cd.binary() {
				ct = "application/octet-stream"
			}
			h.Set("Content-Type", ct)
			w.WriteHeader(http.StatusOK)
			for _, f := range frames {
				if _, err := w.Write(f); err != nil {
					c.end(err)
					return
				}
			}
			if last {
				c.end(errServerClosed)
			}
			return
		}
		if stale {
			w.WriteHeader(http.StatusOK)
			return
		}
		select {
		case <-c.q.notify:
		case <-timer.C:
			w.WriteHeader(http.StatusOK)
			return
		case <-r.Context().Done():
			return
		case <-tctx.Done():
			if c.isEnded() {
				w.WriteHeader(http.StatusNoContent)
			} else {
				w.WriteHeader(http.StatusOK)
			}
			return
		}
	}
}

// clientSend takes a Server-Sent Events or long-polling client's messages
// (POST /client/?hub=..&id=..).
func (s *Server) clientSend(w http.ResponseWriter, r *http.Request) {
	hub, user, ok := s.clientCaller(w, r)
	if !ok {
		return
	}
	c := s.reg.lookup(r.URL.Query().Get("id"), hub)
	switch {
	case c == nil:
		writeError(w, http.StatusNotFound, "Error.Connection.NotExisted", "no such connection")
		return
	case c.user != user:
		s.refuse(w, "client send", http.StatusForbidden, "Error.Forbidden.User", "the connection belongs to another user", errWrongUser)
		return
	case c.kind == transportWebSockets:
		writeError(w, http.StatusBadRequest, "Error.Transport", "the connection uses WebSockets")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReceive+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "Error.InvalidBody", "reading body: "+err.Error())
		return
	}
	if len(body) > maxReceive {
		if c.codecNow() != nil {
			_ = c.tooLarge()
		}
		writeError(w, http.StatusRequestEntityTooLarge, "Error.PayloadTooLarge", "message too large")
		return
	}
	// An error here has queued the connection's last message already.
	_ = c.receive(body, &s.o)
	w.WriteHeader(http.StatusOK)
}

// clientDelete ends a long-polling connection (DELETE /client/?hub=..&id=..).
func (s *Server) clientDelete(w http.ResponseWriter, r *http.Request) {
	hub, user, ok := s.clientCaller(w, r)
	if !ok {
		return
	}
	c := s.reg.lookup(r.URL.Query().Get("id"), hub)
	if c == nil {
		writeError(w, http.StatusNotFound, "Error.Connection.NotExisted", "no such connection")
		return
	}
	if c.user != user {
		s.refuse(w, "client delete", http.StatusForbidden, "Error.Forbidden.User", "the connection belongs to another user", errWrongUser)
		return
	}
	c.end(errClientClosed)
	s.finish(c)
	w.WriteHeader(http.StatusAccepted)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes Azure SignalR's error shape, with x-ms-error-code.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("x-ms-error-code", code)
	writeJSON(w, status, struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{code, msg})
}

func cutByte(s string, sep byte) (before, after string, found bool) {
	if i := strings.IndexByte(s, sep); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

func equalFoldTrim(a, b string) bool { return strings.EqualFold(strings.TrimSpace(a), b) }
