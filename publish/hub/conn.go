package hub

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Timeouts of a client connection; the defaults are ASP.NET Core SignalR's
// and Azure SignalR's (KeepAlive 15 s, ClientTimeout 30 s, Handshake 15 s),
// which the official clients are tuned for.
const (
	defaultKeepAlive        = 15 * time.Second
	defaultClientTimeout    = 30 * time.Second
	defaultHandshakeTimeout = 15 * time.Second
	writeTimeout            = 10 * time.Second
	// maxReceive bounds one client record, and one WebSocket message; a
	// serverless hub only expects pings and small invocations from
	// clients.
	maxReceive = 64 << 10
	// maxWriteBatch bounds the bytes of queued records joined into one
	// WebSocket message (always whole records).
	maxWriteBatch = 64 << 10
)

var (
	errSlowClient   = errors.New("send queue full: client too slow")
	errServerClosed = errors.New("closed by the server")
)

// sendQueue is a connection's bounded queue of whole records. Producers
// never block: a push over the byte bound fails, and the connection is then
// dropped, so one slow client never holds up a send to the others.
type sendQueue struct {
	mu     sync.Mutex
	frames [][]byte
	bytes  int
	max    int
	closed bool
	code   websocket.StatusCode // once closed: the WebSocket close status
	notify chan struct{}        // cap 1: "frames is not empty or closed"
}

func newSendQueue(max int) *sendQueue {
	return &sendQueue{max: max, notify: make(chan struct{}, 1)}
}

// push queues f; false when the queue is closed or f does not fit. One frame
// always fits an empty queue, so a single large message is never refused.
func (q *sendQueue) push(f []byte) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || (q.bytes > 0 && q.bytes+len(f) > q.max) {
		return false
	}
	q.frames = append(q.frames, f)
	q.bytes += len(f)
	q.signal()
	return true
}

// pushLast queues f (when not nil) whatever the bound and closes the
// queue: f is the last record the client gets (a Close message), and the
// WebSocket is then closed with code.
func (q *sendQueue) pushLast(f []byte, code websocket.StatusCode) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	if f != nil {
		q.frames = append(q.frames, f)
	}
	q.closed, q.code = true, code
	q.signal()
	return true
}

func (q *sendQueue) signal() {
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// take empties the queue; closed reports that nothing will follow, and
// code how to close the WebSocket then.
func (q *sendQueue) take() (frames [][]byte, closed bool, code websocket.StatusCode) {
	q.mu.Lock()
	defer q.mu.Unlock()
	frames, q.frames, q.bytes = q.frames, nil, 0
	return frames, q.closed, q.code
}

// conn is one client connection. Its registry entry (groups) is guarded by
// the registry's lock; the rest is set before it is registered.
type conn struct {
	id, hub, user string
	ws            *websocket.Conn
	q             *sendQueue
	ctx           context.Context
	cancel        context.CancelCauseFunc
	log           *slog.Logger
	groups        map[string]struct{} // connection-level groups; registry lock
}

// send queues a record; a client that cannot keep up is disconnected.
func (c *conn) send(frame []byte) {
	if !c.q.push(frame) {
		c.abort(errSlowClient)
	}
}

// close ends the connection after what is queued, with a Close message.
func (c *conn) close(reason string, allowReconnect bool) {
	c.q.pushLast(closeFrame(reason, allowReconnect), websocket.StatusNormalClosure)
}

// closeWith ends the connection after what is queued, with the record
// last (when not nil) and the WebSocket close status code.
func (c *conn) closeWith(last []byte, code websocket.StatusCode) {
	c.q.pushLast(last, code)
}

// abort drops the connection now, without a Close message; the official
// clients treat that as a transport failure and reconnect.
func (c *conn) abort(cause error) { c.cancel(cause) }

// writeLoop writes queued records and keep-alive pings until the queue is
// closed (then it closes the WebSocket) or ctx ends.
func (c *conn) writeLoop(ctx context.Context, keepAlive time.Duration) error {
	ping := time.NewTimer(keepAlive)
	defer ping.Stop()
	var buf []byte
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-ping.C:
			if err := c.write(ctx, pingFrame); err != nil {
				return err
			}
		case <-c.q.notify:
			frames, last, code := c.q.take()
			for len(frames) > 0 {
				// Join whole records into one text message: the JSON
				// protocol allows several records per message, never a
				// partial one.
				buf = append(buf[:0], frames[0]...)
				frames = frames[1:]
				for len(frames) > 0 && len(buf)+len(frames[0]) <= maxWriteBatch {
					buf = append(buf, frames[0]...)
					frames = frames[1:]
				}
				if err := c.write(ctx, buf); err != nil {
					return err
				}
			}
			if last {
				// The close handshake reads the client's answer itself
				// (the read loop has stopped reading by then, or reads it).
				_ = c.ws.Close(code, "")
				return errServerClosed
			}
		}
		ping.Reset(keepAlive)
	}
}

func (c *conn) write(ctx context.Context, b []byte) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	return c.ws.Write(ctx, websocket.MessageText, b)
}
