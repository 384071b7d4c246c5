package hub

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
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
	v, _ := strconv.Atoi(r.URL.Query().Get("negotiateVersion"))
	id, token := newID(), newID()
	key := token
	if v < 1 {
		key = id // version 0 clients connect with id=connectionId
	}
	if err := s.reg.addPending(key, pendingConn{id: id, hub: hubKey(hub), user: user, expires: time.Now().Add(s.o.connectTokenTTL)}); err != nil {
		s.refuse(w, "client negotiate", http.StatusTooManyRequests, "Error.TooManyConnections", err.Error(), err)
		return
	}
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

// clientConnect accepts the WebSocket at /client/?hub=..&id=.. (or without
// id, for clients that skip negotiation).
func (s *Server) clientConnect(w http.ResponseWriter, r *http.Request) {
	hub, ok := s.queryHub(w, r)
	if !ok {
		return
	}
	if !isUpgrade(r) {
		writeError(w, http.StatusBadRequest, "Error.Transport", "only the WebSockets transport is supported")
		return
	}
	// Browsers send their page's Origin; a page the CORS settings do not
	// allow must not open a connection with a token it got hold of (an
	// anonymous negotiate hands one to anyone). Other clients send none.
	if o := r.Header.Get("Origin"); o != "" && !s.origins.allows(o) {
		s.refuse(w, "client connect", http.StatusForbidden, "Error.Forbidden.Origin", "origin not allowed", errors.New("origin "+truncate(o, 100)))
		return
	}
	claims, err := verifyAccessToken(bearer(r, true), []byte(s.key), s.clientAudience(r, hub), s.cfg.Limits.MaxClientTokenTTL)
	if err != nil {
		s.refuse(w, "client connect", http.StatusUnauthorized, "Error.Unauthorized", "invalid token", err)
		return
	}
	p := pendingConn{id: newID(), hub: hubKey(hub), user: userOf(claims)}
	if id := r.URL.Query().Get("id"); id != "" {
		// The connection is the negotiated user's only: ASP.NET Core
		// refuses a token of another user as well.
		p, err = s.reg.takePending(id, hubKey(hub), p.user, time.Now())
		switch {
		case errors.Is(err, errWrongUser):
			s.refuse(w, "client connect", http.StatusForbidden, "Error.Forbidden.User", "the connection belongs to another user", err)
			return
		case err != nil:
			writeError(w, http.StatusNotFound, "Error.Connection.NotExisted", err.Error())
			return
		}
	}
	if err := s.reg.reserve(p.user); err != nil {
		s.refuse(w, "client connect", http.StatusServiceUnavailable, "Error.TooManyConnections", err.Error(), err)
		return
	}
	defer s.reg.release(p.user)
	if !s.track() {
		writeError(w, http.StatusServiceUnavailable, "Error.ShuttingDown", "the hub is shutting down")
		return
	}
	defer s.wg.Done()
	// The Origin was checked above, against the CORS settings rather than
	// the library's same-host rule.
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		s.o.log.Debug("hub: websocket accept failed", "err", err)
		return
	}
	// readMessage bounds messages itself, so that an oversized one gets a
	// SignalR error before the WebSocket closes.
	ws.SetReadLimit(-1)
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

// errTooLarge is a client message or record over maxReceive.
var errTooLarge = errors.New("message too large")

// readMessage appends one WebSocket message to dst, reading at most
// maxReceive bytes of it: a larger one gives errTooLarge, its rest left
// unread (close the connection next; the close handshake discards it).
func readMessage(ctx context.Context, ws *websocket.Conn, dst []byte) ([]byte, error) {
	_, rd, err := ws.Reader(ctx)
	if err != nil {
		return dst, err
	}
	start := len(dst)
	lr := io.LimitReader(rd, maxReceive+1)
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := lr.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if len(dst)-start > maxReceive {
			return dst, errTooLarge
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

// handshake reads the handshake request (within the handshake timeout),
// answering it only when it is refused; it returns the records that came
// after it.
func (s *Server) handshake(ctx context.Context, c *conn) ([]byte, error) {
	hctx, cancel := context.WithTimeout(ctx, s.o.handshakeTimeout)
	defer cancel()
	refuse := func(err error, code websocket.StatusCode) ([]byte, error) {
		_ = c.write(ctx, handshakeError(err.Error()))
		_ = c.ws.Close(code, "handshake failed")
		return nil, err
	}
	tooLarge := errors.New("Handshake request is too large.")
	var buf []byte
	for {
		var err error
		buf, err = readMessage(hctx, c.ws, buf)
		if errors.Is(err, errTooLarge) {
			return refuse(tooLarge, websocket.StatusMessageTooBig)
		}
		if err != nil {
			return nil, err
		}
		_, rest, err := parseHandshake(buf)
		switch {
		case errors.Is(err, errIncomplete) && len(buf) > maxReceive,
			err == nil && len(buf)-len(rest)-1 > maxReceive:
			return refuse(tooLarge, websocket.StatusMessageTooBig)
		case errors.Is(err, errIncomplete):
			continue
		case err != nil:
			return refuse(err, websocket.StatusPolicyViolation)
		}
		return append([]byte(nil), rest...), nil
	}
}

// readLoop handles client records until the client leaves, goes silent
// for the client timeout, or breaks the protocol.
//
// When the connection must end (a protocol error, or the client's Close
// message) it queues the last record and the close status for the write
// loop, stops reading and waits for the write loop to close the WebSocket:
// returning at once would cancel the writer before the client learns why,
// and drop the TCP connection instead of closing the WebSocket.
func (s *Server) readLoop(ctx context.Context, c *conn, buf []byte) error {
	end := func(last []byte, code websocket.StatusCode, err error) error {
		c.closeWith(last, code)
		<-ctx.Done() // the write loop has closed the WebSocket, or the hub is stopping
		return err
	}
	tooLarge := func() error {
		return end(closeFrame("Connection closed with an error: message too large.", false),
			websocket.StatusMessageTooBig, errTooLarge)
	}
	for {
		records, rest := splitRecords(buf)
		for _, rec := range records {
			// A record spread over several messages is bounded as a whole.
			if len(rec) > maxReceive {
				return tooLarge()
			}
			m, err := parseMessage(rec)
			if err != nil {
				c.log.Debug("hub: protocol error", "err", err)
				return end(closeFrame("Connection closed with an error: invalid message.", false), websocket.StatusPolicyViolation, err)
			}
			switch m.Type {
			case typeClose:
				return end(nil, websocket.StatusNormalClosure, errors.New("client sent Close"))
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
			return tooLarge()
		}
		buf = append(buf[:0], rest...)
		rctx, cancel := context.WithTimeout(ctx, s.o.clientTimeout)
		var err error
		buf, err = readMessage(rctx, c.ws, buf)
		timedOut := rctx.Err() != nil && ctx.Err() == nil
		cancel()
		switch {
		case errors.Is(err, errTooLarge):
			return tooLarge()
		case err != nil && timedOut:
			return errors.New("client timeout: no message within the client timeout")
		case err != nil:
			return err
		}
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
