package hub

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// clientNegotiate answers POST /client/negotiate?hub=..&negotiateVersion=1,
// the second hop of the official clients (after the app negotiate).
func (s *Server) clientNegotiate(w http.ResponseWriter, r *http.Request) {
	hub, ok := queryHub(w, r)
	if !ok {
		return
	}
	claims, err := verifyAccessToken(bearer(r, true), []byte(s.key), clientAudience(r, hub))
	if err != nil {
		s.o.log.Debug("hub: client negotiate refused", "hub", hub, "err", err)
		writeError(w, http.StatusUnauthorized, "Error.Unauthorized", "invalid access token: "+err.Error())
		return
	}
	v, _ := strconv.Atoi(r.URL.Query().Get("negotiateVersion"))
	id, token := newID(), newID()
	key := token
	if v < 1 {
		key = id // version 0 clients connect with id=connectionId
	}
	now := time.Now()
	s.reg.addPending(key, pendingConn{id: id, hub: hubKey(hub), user: userOf(claims), expires: now.Add(s.o.connectTokenTTL)}, now)
	type transport struct {
		Transport       string   `json:"transport"`
		TransferFormats []string `json:"transferFormats"`
	}
	// Only WebSockets with Text: the JSON protocol is all this hub speaks.
	// useStatefulReconnect is never returned, so clients that asked for it
	// fall back to the plain protocol (version 1 handshake).
	resp := struct {
		NegotiateVersion    int         `json:"negotiateVersion"`
		ConnectionID        string      `json:"connectionId"`
		ConnectionToken     string      `json:"connectionToken,omitempty"`
		AvailableTransports []transport `json:"availableTransports"`
	}{ConnectionID: id, AvailableTransports: []transport{{"WebSockets", []string{"Text"}}}}
	if v >= 1 {
		resp.NegotiateVersion, resp.ConnectionToken = 1, token
	}
	writeJSON(w, http.StatusOK, resp)
}

func clientAudience(r *http.Request, hub string) audience {
	a := requestAudience(r, "/client")
	a.hub = hub
	return a
}

// queryHub reads and checks ?hub=; it answers 400 itself when it fails.
func queryHub(w http.ResponseWriter, r *http.Request) (string, bool) {
	hs := r.URL.Query()["hub"]
	if len(hs) != 1 || !validHub(hs[0]) {
		writeError(w, http.StatusBadRequest, "Error.InvalidHub", "give exactly one valid hub= query parameter")
		return "", false
	}
	return hs[0], true
}

// clientConnect accepts the WebSocket at /client/?hub=..&id=.. (or without
// id, for clients that skip negotiation).
func (s *Server) clientConnect(w http.ResponseWriter, r *http.Request) {
	hub, ok := queryHub(w, r)
	if !ok {
		return
	}
	if !isUpgrade(r) {
		writeError(w, http.StatusBadRequest, "Error.Transport", "only the WebSockets transport is supported")
		return
	}
	claims, err := verifyAccessToken(bearer(r, true), []byte(s.key), clientAudience(r, hub))
	if err != nil {
		s.o.log.Debug("hub: client connect refused", "hub", hub, "err", err)
		writeError(w, http.StatusUnauthorized, "Error.Unauthorized", "invalid access token: "+err.Error())
		return
	}
	p := pendingConn{id: newID(), hub: hubKey(hub), user: userOf(claims)}
	if id := r.URL.Query().Get("id"); id != "" {
		var found bool
		p, found = s.reg.takePending(id, time.Now())
		if !found || p.hub != hubKey(hub) {
			writeError(w, http.StatusNotFound, "Error.Connection.NotExisted", "no such connection (expired, used, or never negotiated)")
			return
		}
	}
	if !s.track() {
		writeError(w, http.StatusServiceUnavailable, "Error.ShuttingDown", "the hub is shutting down")
		return
	}
	defer s.wg.Done()
	// Origins are not checked: a connection is authorised by its bearer
	// token, never by cookies, so a foreign page cannot ride on a user's
	// session (what the origin check protects against).
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		s.o.log.Debug("hub: websocket accept failed", "err", err)
		return
	}
	ws.SetReadLimit(maxReceive)
	s.serveConn(r.Context(), ws, p)
}

func isUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for len(v) > 0 {
			var t string
			t, v, _ = cutByte(v, ',')
			if equalFoldTrim(t, token) {
				return true
			}
		}
	}
	return false
}

// serveConn runs one connection: handshake, then a read loop here and a
// write loop in a goroutine it waits for.
func (s *Server) serveConn(reqCtx context.Context, ws *websocket.Conn, p pendingConn) {
	ctx, cancel := context.WithCancelCause(reqCtx)
	defer cancel(nil)
	stop := context.AfterFunc(s.baseCtx, func() { cancel(errServerClosed) })
	defer stop()
	defer ws.CloseNow()

	c := &conn{id: p.id, hub: p.hub, user: p.user, ws: ws, q: newSendQueue(s.o.sendQueueBytes),
		ctx: ctx, cancel: cancel}
	c.log = s.o.log.With("hub", c.hub, "connection", c.id)

	rest, err := s.handshake(ctx, c)
	if err != nil {
		c.log.Debug("hub: handshake failed", "err", err)
		return
	}
	// Register before answering the handshake, so that a send made as soon
	// as the client sees the answer reaches it; records queued meanwhile
	// are written after the answer, by the write loop started below.
	if !s.reg.add(c) {
		_ = c.write(ctx, handshakeError("Server is shutting down."))
		return
	}
	defer s.reg.remove(c)
	if err := c.write(ctx, handshakeOK); err != nil {
		c.log.Debug("hub: handshake answer failed", "err", err)
		return
	}
	c.log.Debug("hub: client connected", "user", c.user)

	done := make(chan error, 1)
	go func() {
		err := c.writeLoop(ctx, s.o.keepAlive)
		cancel(err)
		done <- err
	}()
	err = s.readLoop(ctx, c, rest)
	cancel(err)
	werr := <-done
	if cause := context.Cause(ctx); errors.Is(cause, errSlowClient) {
		c.log.Warn("hub: client disconnected: its send queue is full")
	} else {
		c.log.Debug("hub: client disconnected", "read", err, "write", werr)
	}
}

// handshake reads the handshake request (within the handshake timeout),
// answering it only when it is refused; it returns the records that came
// after it.
func (s *Server) handshake(ctx context.Context, c *conn) ([]byte, error) {
	hctx, cancel := context.WithTimeout(ctx, s.o.handshakeTimeout)
	defer cancel()
	var buf []byte
	for {
		_, data, err := c.ws.Read(hctx)
		if err != nil {
			return nil, err
		}
		buf = append(buf, data...)
		_, rest, err := parseHandshake(buf)
		if errors.Is(err, errIncomplete) {
			if len(buf) > maxReceive {
				err = errors.New("Handshake request is too large.")
			} else {
				continue
			}
		}
		if err != nil {
			_ = c.write(ctx, handshakeError(err.Error()))
			_ = c.ws.Close(websocket.StatusPolicyViolation, "handshake failed")
			return nil, err
		}
		return append([]byte(nil), rest...), nil
	}
}

// readLoop handles client records until the client leaves, goes silent
// for the client timeout, or breaks the protocol.
//
// After a protocol error it queues a Close message and keeps reading (and
// discarding) until the write loop has sent it and closed the socket:
// returning at once would cancel the writer before the client learns why.
func (s *Server) readLoop(ctx context.Context, c *conn, buf []byte) error {
	var protoErr error
	for {
		records, rest := splitRecords(buf)
		if protoErr != nil {
			records, rest = nil, nil
		}
		for _, rec := range records {
			m, err := parseMessage(rec)
			if err != nil {
				c.log.Debug("hub: protocol error", "err", err)
				c.close("Connection closed with an error: invalid message.", false)
				protoErr = err
				rest = nil
				break
			}
			switch m.Type {
			case typeClose:
				return errors.New("client sent Close")
			case typeInvocation, typeStreamInvocation:
				// A serverless hub runs no methods; say so to a client
				// waiting for a result instead of leaving it hanging.
				if m.InvocationID != "" {
					c.send(completionError(m.InvocationID, "Serverless hub: client invocations are not supported."))
				}
			}
			// Pings only prove liveness; other types are ignored as the
			// protocol asks.
		}
		if len(rest) > maxReceive {
			c.close("Connection closed with an error: message too large.", false)
			protoErr = errors.New("incomplete record too large")
			rest = nil
		}
		buf = append(buf[:0], rest...)
		rctx, cancel := context.WithTimeout(ctx, s.o.clientTimeout)
		_, data, err := c.ws.Read(rctx)
		timedOut := rctx.Err() != nil && ctx.Err() == nil
		cancel()
		if err != nil {
			if protoErr != nil {
				return protoErr
			}
			if timedOut {
				return errors.New("client timeout: no message within the client timeout")
			}
			return err
		}
		buf = append(buf, data...)
	}
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
