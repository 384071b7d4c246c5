package hub

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// Timeouts of a client connection; the defaults are ASP.NET Core SignalR's
// and Azure SignalR's (KeepAlive 15 s, ClientTimeout 30 s, Handshake 15 s),
// which the official clients are tuned for.
const (
	defaultKeepAlive        = 15 * time.Second
	defaultClientTimeout    = 30 * time.Second
	defaultHandshakeTimeout = 15 * time.Second
	// defaultPollTimeout is how long a long poll waits for data before it
	// answers empty (ASP.NET Core's 90 s; the clients wait 100 s).
	defaultPollTimeout = 90 * time.Second
	writeTimeout       = 10 * time.Second
	// maxReceive bounds one client record, and one WebSocket message or
	// POST body; a serverless hub only expects pings and small invocations
	// from clients.
	maxReceive = 64 << 10
	// maxWriteBatch bounds the bytes of queued messages joined into one
	// WebSocket message or Server-Sent Event (always whole messages).
	maxWriteBatch = 64 << 10
)

var (
	errSlowClient   = errors.New("send queue full: client too slow")
	errServerClosed = errors.New("closed by the server")
	errReplaced     = errors.New("replaced by a newer transport of the same connection")
	errClientClosed = errors.New("client sent Close")
)

// transport is how a connection reaches its client (TransportProtocols.md).
type transport int

const (
	transportWebSockets transport = iota
	transportServerSentEvents
	transportLongPolling
)

// Transport names, as negotiate lists them and config names them.
const (
	TransportWebSockets       = "WebSockets"
	TransportServerSentEvents = "ServerSentEvents"
	TransportLongPolling      = "LongPolling"
)

func (t transport) String() string {
	return [...]string{TransportWebSockets, TransportServerSentEvents, TransportLongPolling}[t]
}

// qitem is one queued message; seq is its stateful reconnect sequence id
// (0: not counted, e.g. pings).
type qitem struct {
	b   []byte
	seq uint64
}

// sendQueue is a connection's bounded queue of whole messages. Producers
// never block: a push over the byte bound fails, and the connection is then
// dropped, so one slow client never holds up a send to the others.
//
// With stateful reconnect it also keeps what was written and not yet
// acknowledged, to write it again on the next transport. While no
// transport is attached, the bound is the stateful reconnect buffer.
type sendQueue struct {
	mu     sync.Mutex
	items  []qitem
	bytes  int
	max    int
	closed bool
	held   bool          // nothing is taken until release (see conn.receive)
	code   ws.StatusCode // once closed: the WebSocket close status
	notify chan struct{} // cap 1: "items is not empty or closed"

	// A WebSocket has no writer goroutine while it has nothing to send:
	// waker (set while one is attached, for its generation wakeGen)
	// starts one once there is something to take, and writing is true
	// until that writer finds the queue empty (takeOrPark). Server-Sent
	// Events and long polls wait on notify instead.
	waker   func()
	wakeGen int
	writing bool

	// Stateful reconnect.
	stateful     bool
	lastSeq      uint64  // the id of the last sequenced message queued
	unacked      []qitem // taken (written or being written), not acknowledged
	unackedBytes int
	detached     bool
	detachedMax  int
	gen          int // incremented by resume: takers of older ones stop
}

// newSendQueue returns a queue that holds what is pushed until release.
func newSendQueue(max int) *sendQueue {
	return &sendQueue{max: max, notify: make(chan struct{}, 1), held: true}
}

// newWakerQueue is newSendQueue for a WebSocket connection, whose writers
// the waker starts: it has no notify channel.
func newWakerQueue(max int) *sendQueue {
	return &sendQueue{max: max, held: true}
}

// release lets takers take (the handshake answer first).
func (q *sendQueue) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.held = false
	q.signal()
}

// setStateful turns stateful reconnect on: sequenced messages are kept
// until acknowledged, and at most bufferBytes of them while detached.
func (q *sendQueue) setStateful(bufferBytes int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.stateful, q.detachedMax = true, bufferBytes
}

// push queues b; false when the queue is closed or b does not fit. One
// message always fits an empty queue, so a single large message is never
// refused. sequenced marks the messages stateful reconnect counts
// (Invocation, Completion …).
func (q *sendQueue) push(b []byte, sequenced bool) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	limit := q.max
	if q.detached && q.stateful {
		// Only stateful reconnect bounds a connection without transport
		// by its buffer. A long-polling client is without one between
		// polls, every time: its queue keeps the usual bound.
		limit = q.detachedMax
	}
	held := q.bytes + q.unackedBytes
	if q.closed || (held > 0 && held+len(b) > limit) {
		return false
	}
	it := qitem{b: b}
	if sequenced && q.stateful {
		q.lastSeq++
		it.seq = q.lastSeq
	}
	q.items = append(q.items, it)
	q.bytes += len(b)
	q.signal()
	return true
}

// pushLast queues b (when not nil) whatever the bound and closes the
// queue: b is the last message the client gets (a Close message), and the
// WebSocket is then closed with code.
func (q *sendQueue) pushLast(b []byte, code ws.StatusCode) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	if b != nil {
		q.items = append(q.items, qitem{b: b})
	}
	q.closed, q.code = true, code
	q.signal()
	return true
}

func (q *sendQueue) signal() {
	if q.waker != nil {
		if !q.writing && q.wakeGen == q.gen && (q.closed || !q.held && len(q.items) > 0) {
			q.writing = true
			q.waker()
		}
		return
	}
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// take empties the queue for the taker of generation gen, appending its
// messages to frames[:0] (a writer passes the same slice each time, and
// the queue keeps its own array: no allocation per delivery); closed
// reports that nothing will follow, and code how to close the WebSocket
// then. stale reports that a newer transport took over (nothing is taken).
func (q *sendQueue) take(gen int, frames [][]byte) (_ [][]byte, closed bool, code ws.StatusCode, stale bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.takeLocked(gen, frames)
}

func (q *sendQueue) takeLocked(gen int, frames [][]byte) (_ [][]byte, closed bool, code ws.StatusCode, stale bool) {
	frames = frames[:0]
	if gen != q.gen {
		return frames, false, 0, true
	}
	if q.held && !q.closed {
		return frames, false, 0, false
	}
	for _, it := range q.items {
		frames = append(frames, it.b)
		if it.seq != 0 {
			q.unacked = append(q.unacked, it)
			q.unackedBytes += len(it.b)
		}
	}
	clear(q.items) // the messages are the taker's now
	if cap(q.items) > 1024 {
		q.items = nil // after a burst, not kept
	} else {
		q.items = q.items[:0]
	}
	q.bytes = 0
	return frames, q.closed, q.code, false
}

// setWaker attaches the writer starter of transport generation gen (see
// waker); it starts a writer at once when something is queued.
func (q *sendQueue) setWaker(gen int, wake func()) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if gen != q.gen {
		return // a newer transport took over already
	}
	q.waker, q.wakeGen, q.writing = wake, gen, false
	q.signal()
}

// clearWaker detaches generation gen's writer starter: what is pushed
// from now on waits for the next transport.
func (q *sendQueue) clearWaker(gen int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.wakeGen == gen {
		q.waker = nil
	}
}

// takeOrPark is take for a writer started by the waker: when there is
// nothing to take it reports parked, and the next push starts a new writer.
func (q *sendQueue) takeOrPark(gen int, frames [][]byte) (_ [][]byte, closed bool, code ws.StatusCode, stale, parked bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if gen == q.gen && !q.closed && (q.held || len(q.items) == 0) {
		q.writing = false
		return frames[:0], false, 0, false, true
	}
	frames, closed, code, stale = q.takeLocked(gen, frames)
	return frames, closed, code, stale, false
}

// ack drops the kept messages up to sequence id n, which the client has.
func (q *sendQueue) ack(n uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := 0
	for ; i < len(q.unacked) && q.unacked[i].seq <= n; i++ {
		q.unackedBytes -= len(q.unacked[i].b)
	}
	q.unacked = append(q.unacked[:0], q.unacked[i:]...)
}

// detach marks the connection as having no transport: with stateful
// reconnect, pushes are bounded by its buffer until resume.
func (q *sendQueue) detach() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.detached = true
}

// resume starts a new transport generation: it queues the Sequence message
// (seq gives it for the first id to be sent again), then every kept
// message not acknowledged, then what was queued meanwhile. It returns the
// generation the new transport takes with.
func (q *sendQueue) resume(seq func(first uint64) []byte) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	first := q.lastSeq + 1
	for _, it := range q.unacked {
		first = it.seq
		break
	}
	for _, it := range q.items {
		if it.seq != 0 && it.seq < first {
			first = it.seq
		}
	}
	items := make([]qitem, 0, 1+len(q.unacked)+len(q.items))
	items = append(items, qitem{b: seq(first)})
	items = append(items, q.unacked...)
	for _, it := range q.items {
		// Pings and acks of the old transport mean nothing now.
		if it.seq != 0 || q.closed {
			items = append(items, it)
		}
	}
	q.items, q.unacked, q.unackedBytes = items, nil, 0
	q.bytes = 0
	for _, it := range items {
		q.bytes += len(it.b)
	}
	q.detached = false
	q.gen++
	q.signal()
	return q.gen
}

// conn is one client connection, on any transport. Its registry entry
// (groups) is guarded by the registry's lock; id, token, hub, user, kind
// and (once the handshake is done, before the connection is registered
// for sends) codec never change.
type conn struct {
	id, token, hub, user string
	kind                 transport
	statefulOK           bool // negotiate offered stateful reconnect
	q                    *sendQueue
	ctx                  context.Context
	cancel               context.CancelCauseFunc
	baseLog              *slog.Logger // see logger
	created              time.Time
	groups               map[string]struct{} // connection-level groups; registry lock

	// codec is set by the handshake; sends read it without a lock since a
	// connection is registered for sends only after.
	codec codec

	pollMu sync.Mutex // one long poll at a time

	mu         sync.Mutex
	handshaken bool
	stateful   bool
	inbuf      []byte // an incomplete message from the client
	recvNext   uint64 // stateful: the id the next sequenced client message has
	recvLast   uint64 // stateful: the id of the last one handled
	lastSeen   time.Time
	attached   int // transport generation attached; 0: none
	attachGen  int
	curStop    func(error) // stops the attached transport
	detachedAt time.Time
	ended      bool

	// lastWrite is the keep-alive tick (Server.ticks) of the last write
	// to the connection's WebSocket; 0: it never had one.
	lastWrite atomic.Int64

	// onHandshake registers the connection for sends.
	onHandshake func(*conn) bool
	endOnce     sync.Once
}

// logger is the connection's logger. It is made when something is logged
// (connecting, leaving, errors), not kept: an idle connection holds no
// formatted attributes.
func (c *conn) logger() *slog.Logger {
	return c.baseLog.With("hub", c.hub, "connection", c.id, "transport", c.kind.String())
}

// send queues an Invocation; a client that cannot keep up is disconnected.
func (c *conn) send(o *outbound) {
	b := c.codec.invocation(o)
	if b == nil {
		c.logger().Warn("hub: message cannot be encoded for the client's protocol; not sent")
		return
	}
	c.push(b, true)
}

func (c *conn) push(b []byte, sequenced bool) {
	if !c.q.push(b, sequenced) {
		c.end(errSlowClient)
	}
}

// close ends the connection after what is queued, with a Close message.
func (c *conn) close(reason string, allowReconnect bool) {
	cd := c.codecNow()
	if cd == nil {
		cd = jsonCodec{}
	}
	c.q.pushLast(cd.close(reason, allowReconnect), ws.StatusNormalClosure)
}

// closeWith ends the connection after what is queued, with the message
// last (when not nil) and the WebSocket close status code.
func (c *conn) closeWith(last []byte, code ws.StatusCode) {
	c.q.pushLast(last, code)
}

func (c *conn) codecNow() codec {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.codec
}

// end drops the connection now: its transports stop and its queue takes
// nothing more. Without a Close message first, the official clients treat
// that as a transport failure and reconnect. It may run under the
// registry's lock (a send that finds the queue full), so leaving the
// registry is Server.finish's job: the transport's handler does it as it
// returns, the sweep for connections without one.
func (c *conn) end(cause error) {
	c.endOnce.Do(func() {
		c.mu.Lock()
		c.ended = true
		stop := c.curStop
		c.mu.Unlock()
		c.q.pushLast(nil, ws.StatusGoingAway)
		c.cancel(cause)
		if stop != nil {
			stop(cause)
		}
	})
}

func (c *conn) isEnded() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ended
}

// attach makes a transport the connection's current one, stopping the
// previous (a stateful reconnect can arrive before the hub notices the old
// WebSocket is gone). It returns the transport's context and its queue
// generation; detach is to be called when the transport ends. ok is false
// when the connection has ended.
func (c *conn) attach(resume bool) (ctx context.Context, gen int, detach func(), ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return nil, 0, nil, false
	}
	ctx, cancel := context.WithCancelCause(c.ctx)
	gen, detach = c.attachLocked(resume, cancel)
	return ctx, gen, detach, true
}

// attachStop is attach for a transport that stops through stop (called
// with the cause: the connection ended, or a newer transport took over)
// rather than through a context: a WebSocket, which this way keeps no
// context of its own while idle.
func (c *conn) attachStop(resume bool, stop func(error)) (gen int, detach func(), ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return 0, nil, false
	}
	gen, detach = c.attachLocked(resume, stop)
	return gen, detach, true
}

func (c *conn) attachLocked(resume bool, stop func(error)) (gen int, detach func()) {
	if c.curStop != nil {
		c.curStop(errReplaced)
	}
	c.attachGen++
	mine := c.attachGen
	c.attached, c.curStop = mine, stop
	if resume {
		gen = c.q.resume(c.codec.sequence)
		c.recvNext = 0 // the client starts with its Sequence message
	} else {
		c.q.mu.Lock()
		gen = c.q.gen
		c.q.mu.Unlock()
	}
	detach = func() {
		stop(nil)
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.attached == mine {
			c.attached, c.curStop, c.detachedAt = 0, nil, time.Now()
			c.q.detach()
		}
	}
	return gen, detach
}

// expired reports why the connection should end at now, or nil: a
// handshake that did not come in time, a stateful connection detached
// longer than the reconnect window, a long-polling client that stopped
// polling, or a Server-Sent Events client that stopped pinging.
func (c *conn) expired(now time.Time, o *options) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.ended:
		return nil
	case !c.handshaken && now.Sub(c.created) > o.handshakeTimeout:
		return errors.New("no handshake within the handshake timeout")
	case c.attached == 0 && c.stateful && now.Sub(c.detachedAt) > o.statefulWindow:
		return errors.New("not reconnected within the stateful reconnect window")
	case c.attached == 0 && c.kind == transportLongPolling && now.Sub(c.detachedAt) > o.clientTimeout:
		return errors.New("no poll within the client timeout")
	case c.kind == transportServerSentEvents && c.handshaken && now.Sub(c.lastSeen) > o.clientTimeout:
		return errors.New("client timeout: no message within the client timeout")
	}
	return nil
}

// receive handles data from the client: the handshake first, then whole
// messages of its protocol. An error ends reading: the connection's last
// message (a handshake error, a Close) is queued, and the writer closes
// the transport after it.
func (c *conn) receive(data []byte, o *options) error {
	c.mu.Lock()
	c.lastSeen = time.Now()
	// buf is the connection's own (appending to a nil inbuf copies data),
	// and an incomplete tail stays in it: a message arriving in many
	// pieces is copied once, not once per piece.
	buf := append(c.inbuf, data...)
	c.inbuf = nil
	// The handshake and JSON records end with a separator: when the piece
	// holds none, what was incomplete still is, without searching it all
	// again.
	if len(buf) > len(data) && (!c.handshaken || !c.codec.binary()) && bytes.IndexByte(data, recordSeparator) < 0 {
		handshaken := c.handshaken
		if len(buf) <= maxReceive {
			c.inbuf = buf
		}
		c.mu.Unlock()
		switch {
		case len(buf) <= maxReceive:
			return nil
		case !handshaken:
			return c.refuseHandshake(errors.New("Handshake request is too large."), ws.StatusMessageTooBig)
		}
		return c.tooLarge()
	}
	var registered bool
	if !c.handshaken {
		h, rest, err := parseHandshake(buf)
		switch {
		case errors.Is(err, errIncomplete):
			if len(buf) > maxReceive {
				c.mu.Unlock()
				return c.refuseHandshake(errors.New("Handshake request is too large."), ws.StatusMessageTooBig)
			}
			c.inbuf = buf
			c.mu.Unlock()
			return nil
		case err == nil && len(buf)-len(rest)-1 > maxReceive:
			err = errors.New("Handshake request is too large.")
			c.mu.Unlock()
			return c.refuseHandshake(err, ws.StatusMessageTooBig)
		case err == nil && h.Protocol == protoMessagePack && c.kind == transportServerSentEvents:
			err = errors.New("Cannot use the 'messagepack' protocol on the current transport. The transport does not support 'Binary' transfer format.")
			fallthrough
		case err != nil:
			c.mu.Unlock()
			return c.refuseHandshake(err, ws.StatusPolicyViolation)
		}
		c.codec = codecFor(h.Protocol)
		c.handshaken = true
		if c.statefulOK && h.Version >= 2 && c.kind == transportWebSockets {
			c.stateful = true
			c.q.setStateful(o.statefulBufferBytes)
		}
		// The answer is queued first and held until the connection is
		// registered: it is the first message the client gets, and a send
		// made as soon as the client sees it reaches the client.
		c.q.push(handshakeOK, false)
		registered = true
		buf = rest
	}
	cd := c.codec
	c.mu.Unlock()
	if registered {
		ok := c.onHandshake(c)
		c.q.release()
		if !ok {
			c.closeWith(cd.close("Server is shutting down.", true), ws.StatusGoingAway)
			return errServerClosed
		}
	}
	rest := buf
	for {
		m, r, ok, err := cd.next(rest)
		if err != nil {
			return c.protocolError(err)
		}
		if !ok {
			break
		}
		if len(m) > maxReceive {
			return c.tooLarge()
		}
		if err := c.handle(cd, m); err != nil {
			return err
		}
		rest = r
	}
	if len(rest) > maxReceive {
		return c.tooLarge()
	}
	if len(rest) > 0 {
		c.mu.Lock()
		c.inbuf = append(buf[:0], rest...) // to the front of buf, whose messages are handled
		c.mu.Unlock()
	}
	return nil
}

func (c *conn) refuseHandshake(err error, code ws.StatusCode) error {
	c.closeWith(handshakeError(err.Error()), code)
	return err
}

func (c *conn) tooLarge() error {
	c.closeWith(c.codec.close("Connection closed with an error: message too large.", false), ws.StatusMessageTooBig)
	return errTooLarge
}

func (c *conn) protocolError(err error) error {
	c.logger().Debug("hub: protocol error", "err", err)
	c.closeWith(c.codec.close("Connection closed with an error: invalid message.", false), ws.StatusPolicyViolation)
	return err
}

// handle acts on one client message.
func (c *conn) handle(cd codec, rec []byte) error {
	m, err := cd.parse(rec)
	if err != nil {
		return c.protocolError(err)
	}
	switch m.Type {
	case typeClose:
		c.closeWith(nil, ws.StatusNormalClosure)
		return errClientClosed
	case typeAck:
		c.q.ack(m.SequenceID)
		return nil
	case typeSequence:
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.stateful {
			c.recvNext = m.SequenceID
		}
		return nil
	case typeInvocation, typeStreamItem, typeCompletion, typeStreamInvocation, typeCancelInvocation:
		if c.stateful {
			// Count it, drop it when it is one the client sent again
			// after a reconnect, and acknowledge it.
			c.mu.Lock()
			if c.recvNext == 0 {
				c.recvNext = c.recvLast + 1
			}
			id := c.recvNext
			c.recvNext++
			dup := id <= c.recvLast
			if !dup {
				c.recvLast = id
			}
			last := c.recvLast
			c.mu.Unlock()
			c.push(cd.ack(last), false)
			if dup {
				return nil
			}
		}
		// A serverless hub runs no methods; say so to a client waiting
		// for a result instead of leaving it hanging.
		if (m.Type == typeInvocation || m.Type == typeStreamInvocation) && m.InvocationID != "" {
			c.push(cd.completionError(m.InvocationID, "Serverless hub: client invocations are not supported."), true)
		}
	}
	// Pings only prove liveness; other types are ignored as the protocol
	// asks.
	return nil
}

// pump writes what is queued for transport generation gen through write
// (whole messages, joined up to maxWriteBatch) and a ping after keepAlive
// without writes, until the queue is closed (it returns errServerClosed
// and the close code after the last message), ctx ends, a newer transport
// takes over, or write fails.
func (c *conn) pump(ctx context.Context, gen int, keepAlive time.Duration, write func([]byte) error) (ws.StatusCode, error) {
	ping := time.NewTimer(keepAlive)
	defer ping.Stop()
	var buf []byte
	var frames [][]byte
	for {
		select {
		case <-ctx.Done():
			return 0, context.Cause(ctx)
		case <-ping.C:
			if cd := c.codecNow(); cd != nil {
				if err := write(cd.ping()); err != nil {
					return 0, err
				}
			}
		case <-c.q.notify:
			var last, stale bool
			var code ws.StatusCode
			frames, last, code, stale = c.q.take(gen, frames)
			if stale {
				// The newer transport may have missed the signal.
				c.q.signal()
				return 0, errReplaced
			}
			for i := 0; i < len(frames); {
				out := frames[i]
				i++
				if i < len(frames) && len(out)+len(frames[i]) <= maxWriteBatch {
					buf = append(buf[:0], out...)
					for ; i < len(frames) && len(buf)+len(frames[i]) <= maxWriteBatch; i++ {
						buf = append(buf, frames[i]...)
					}
					out = buf
				}
				if err := write(out); err != nil {
					return 0, err
				}
			}
			clear(frames) // written: let them go
			if last {
				return code, errServerClosed
			}
		}
		ping.Reset(keepAlive)
	}
}
