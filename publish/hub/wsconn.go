package hub

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// The WebSocket transport holds next to nothing while a connection is
// idle: one goroutine (its reader, parked in a one-byte read), no buffer
// and no writer. A read buffer comes from a pool while a frame is in
// flight; a writer goroutine exists only while the connection's queue has
// something to send (sendQueue.waker) and takes its buffer from a pool.
//
// The hub frames WebSockets itself on gobwas/ws's primitives (header
// encoding, checks, unmasking, the upgrade) because a library connection
// object such as coder/websocket's keeps net/http's 4 KB read and write
// buffers for its whole life and needs a goroutine blocked in each
// direction: 40 KB per idle connection, as much as Centrifugo's, against
// ≤ 16 KB here (bench/idle, BENCHMARKS.md).

const (
	// closeWait bounds how long a WebSocket whose Close frame went out
	// waits for the client's (which the client sends as it reads ours;
	// closing before would reset the connection and could cut what the
	// client has not read yet).
	closeWait = 5 * time.Second
	// readBufSize is a pooled read buffer's size (net/http's, too).
	readBufSize = 4 << 10
	// rearmAfter: a deadline is moved on at most this often per
	// connection; it is a runtime timer change, and a fan-out writes to
	// every connection often.
	rearmAfter = time.Second
)

// aLongTimeAgo as a deadline makes the socket's pending and next reads
// and writes fail at once.
var aLongTimeAgo = time.Unix(1, 0)

var (
	readBufs   = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}
	writeBufs  = sync.Pool{New: func() any { return new(writeScratch) }}
	errWSClose = errors.New("client closed the WebSocket")
)

// writeScratch is a writer's batch: the frames it took and the bytes of
// the message it writes.
type writeScratch struct {
	frames [][]byte
	buf    []byte
}

// frameReader reads the client's WebSocket messages from src. Between
// messages it holds no buffer: it waits in a one-byte read.
type frameReader struct {
	src  io.Reader
	bufp *[]byte // pooled while bytes are in flight; nil while idle
	r, w int     // unread bytes: (*bufp)[r:w]
	one  [1]byte
	hdr  [ws.MaxHeaderSize - 2]byte
	ctl  [ws.MaxControlFramePayloadSize]byte
	skip int64 // payload bytes of a refused frame, dropped before the next
}

// preload makes b (bytes read past the upgrade request) the first the
// reader reads.
func (fr *frameReader) preload(b []byte) {
	if len(b) == 0 {
		return
	}
	fr.bufp = readBufs.Get().(*[]byte)
	if len(b) > len(*fr.bufp) {
		nb := slices.Clone(b)
		fr.bufp = &nb
	}
	fr.r, fr.w = 0, copy(*fr.bufp, b)
}

// Read serves the pooled buffer, refilling it from src; a read as large
// as the buffer goes to src directly.
func (fr *frameReader) Read(p []byte) (int, error) {
	if fr.r == fr.w {
		if fr.bufp == nil || len(p) >= len(*fr.bufp) {
			return fr.src.Read(p)
		}
		n, err := fr.src.Read(*fr.bufp)
		fr.r, fr.w = 0, n
		if n == 0 {
			return 0, err
		}
	}
	n := copy(p, (*fr.bufp)[fr.r:fr.w])
	fr.r += n
	return n, nil
}

// wait returns once there is something to read, giving the buffer back
// to the pool while it waits.
func (fr *frameReader) wait() error {
	if fr.r < fr.w {
		return nil
	}
	fr.release()
	if _, err := io.ReadFull(fr.src, fr.one[:]); err != nil {
		return err
	}
	fr.bufp = readBufs.Get().(*[]byte)
	(*fr.bufp)[0] = fr.one[0]
	fr.r, fr.w = 0, 1
	return nil
}

// release gives the buffer back when nothing in it is unread.
func (fr *frameReader) release() {
	if fr.bufp != nil && fr.r == fr.w {
		if cap(*fr.bufp) == readBufSize {
			readBufs.Put(fr.bufp)
		}
		fr.bufp, fr.r, fr.w = nil, 0, 0
	}
}

// wsCloseFrame is the client's Close frame, ending a read.
type wsCloseFrame struct {
	code   ws.StatusCode
	reason string
}

func (e *wsCloseFrame) Error() string {
	return "client closed the WebSocket (" + strconv.Itoa(int(e.code)) + " " + truncate(e.reason, 100) + ")"
}

func (e *wsCloseFrame) Unwrap() error { return errWSClose }

// next appends the client's next data message to dst and reports whether
// it is binary. Pings are answered through pong on the way; a Close frame
// ends it with a *wsCloseFrame. A message over maxReceive gives errTooLarge
// before its payload is read (no length the client declares is trusted);
// a frame that breaks RFC 6455 gives a ws.ProtocolError.
func (fr *frameReader) next(dst []byte, pong func([]byte) error) (_ []byte, binary bool, err error) {
	start := len(dst)
	fragmented := false
	for {
		if fr.skip > 0 {
			n, err := io.CopyN(io.Discard, fr, fr.skip)
			if fr.skip -= n; err != nil {
				return dst, false, err
			}
		}
		if err := fr.wait(); err != nil {
			return dst, false, err
		}
		h, err := ws.ReadHeaderBuffer(fr, fr.hdr[:])
		if errors.Is(err, ws.ErrHeaderLengthMSB) || errors.Is(err, ws.ErrHeaderLengthUnexpected) {
			return dst, false, ws.ProtocolError(err.Error())
		}
		if err != nil {
			return dst, false, err
		}
		state := ws.StateServerSide
		if fragmented {
			state |= ws.StateFragmented
		}
		if err := ws.CheckHeader(h, state); err != nil {
			return dst, false, err
		}
		if h.OpCode.IsControl() {
			p := fr.ctl[:h.Length]
			if _, err := io.ReadFull(fr, p); err != nil {
				return dst, false, err
			}
			ws.Cipher(p, h.Mask, 0)
			switch h.OpCode {
			case ws.OpPing:
				if err := pong(p); err != nil {
					return dst, false, err
				}
			case ws.OpClose:
				if len(p) == 1 {
					return dst, false, ws.ProtocolError("close frame of one byte")
				}
				code, reason := ws.ParseCloseFrameData(p)
				return dst, false, &wsCloseFrame{code: code, reason: reason}
			}
			continue
		}
		if h.Length > int64(maxReceive-(len(dst)-start)) {
			fr.skip = h.Length
			return dst, false, errTooLarge
		}
		if !fragmented {
			binary = h.OpCode == ws.OpBinary
		}
		// The payload is read a buffer's worth at a time, dst growing as
		// bytes arrive: a client that declares 64 KB and sends nothing
		// more holds no 64 KB of ours.
		n := len(dst)
		for need := int(h.Length); need > 0; {
			k, at := min(need, readBufSize), len(dst)
			dst = slices.Grow(dst, k)[:at+k]
			if _, err := io.ReadFull(fr, dst[at:]); err != nil {
				return dst[:n], false, err
			}
			need -= k
		}
		ws.Cipher(dst[n:], h.Mask, 0)
		if h.Fin {
			return dst, binary, nil
		}
		fragmented = true
	}
}

// appendFrameHeader appends the header of a server frame (unmasked,
// final) of n payload bytes.
func appendFrameHeader(b []byte, op ws.OpCode, n int) []byte {
	b = append(b, 0x80|byte(op))
	switch {
	case n < 126:
		return append(b, byte(n))
	case n <= 0xffff:
		return append(b, 126, byte(n>>8), byte(n))
	}
	return append(b, 127, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// wsTransport is one WebSocket of a connection (a stateful connection may
// have a newer one later).
type wsTransport struct {
	s   *Server
	c   *conn
	nc  net.Conn
	gen int
	fr  frameReader
	rdl time.Time // reader: the read deadline set last

	detach func()
	cause  atomic.Pointer[error] // why the transport was stopped (stop)

	writers   sync.WaitGroup
	dead      atomic.Bool // the transport ends: writers and the reader stop
	closeSent atomic.Bool // a Close frame went out (written under wmu)
	wmu       sync.Mutex  // one frame at a time on nc
	wdl       time.Time   // wmu: the write deadline set last
	werr      error       // wmu: why writing failed
}

// serveWebSocket upgrades the request and hands c's WebSocket to a fresh
// goroutine, so that the request's goroutine (whose stack grew through
// net/http and the handlers) and net/http's buffers go. resume is a
// stateful connection coming back on a new WebSocket: it gets a Sequence
// message and every message not acknowledged, and no new handshake.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, c *conn, resume bool) {
	if !s.track() {
		writeError(w, http.StatusServiceUnavailable, "Error.ShuttingDown", "the hub is shutting down")
		if !resume {
			c.end(errServerClosed)
			s.finish(c)
		}
		return
	}
	// The Origin was checked by clientCaller, against the CORS settings.
	nc, rw, _, err := ws.HTTPUpgrader{Timeout: writeTimeout}.Upgrade(r, w)
	if err != nil {
		s.o.log.Debug("hub: websocket upgrade failed", "err", err)
		if nc != nil {
			nc.Close()
		}
		s.wg.Done()
		if !resume {
			c.end(err)
			s.finish(c)
		}
		return
	}
	t := &wsTransport{s: s, c: c, nc: nc}
	t.fr.src = nc
	if n := rw.Reader.Buffered(); n > 0 {
		// The client may have sent its handshake with the upgrade.
		b, _ := rw.Reader.Peek(n)
		t.fr.preload(b)
	}
	go t.run(resume)
}

// run attaches the transport and starts reading: readNext.
func (t *wsTransport) run(resume bool) {
	s, c := t.s, t.c
	gen, detach, ok := c.attachStop(resume, t.stop)
	if !ok {
		t.nc.Close()
		t.fr.r = t.fr.w
		t.fr.release()
		s.wg.Done()
		return
	}
	t.gen, t.detach = gen, detach
	if resume {
		c.logger().Debug("hub: client reconnected (stateful)")
	}
	c.lastWrite.Store(s.ticks.Load())
	c.q.setWaker(gen, t.startWriter)
	t.readNext()
}

// readNext reads and handles the client's next message, then hands the
// reading on to a fresh goroutine and returns: the goroutine that waits
// for the client thus starts with a small stack, not one grown by
// handling a message (a handshake, say), and an idle connection holds
// 2 KB of stack instead of 8 (bench/idle). The client sends a few
// messages a minute (pings), so the goroutine this costs per message does
// not count. When reading ends, it ends the transport.
func (t *wsTransport) readNext() {
	err, last, more := t.readOne()
	if more {
		go t.readNext()
		return
	}
	t.end(err, last)
}

// end waits for the writer, closes the socket and decides what the
// connection does: wait for a stateful reconnect, or end.
func (t *wsTransport) end(rerr error, last bool) {
	s, c := t.s, t.c
	defer s.wg.Done()
	defer s.finish(c)
	defer t.detach()
	c.q.clearWaker(t.gen)
	t.dead.Store(true)
	t.nc.Close()
	t.writers.Wait()
	t.fr.r = t.fr.w
	t.fr.release()

	cause := t.stopCause()
	t.wmu.Lock()
	werr := t.werr
	t.wmu.Unlock()
	closing := last || t.closeSent.Load()
	switch {
	case errors.Is(cause, errReplaced):
		// A newer WebSocket of the same connection took over.
	case c.isStateful() && !closing && !errors.Is(rerr, errClientTimeout) && s.baseCtx.Err() == nil:
		// The transport dropped: the connection waits for its client
		// to come back within the stateful reconnect window.
		c.logger().Debug("hub: transport lost; waiting for a stateful reconnect", "read", rerr, "write", werr)
	default:
		switch {
		case cause != nil:
		case werr != nil:
			cause = werr
		case rerr != nil:
			cause = rerr
		default:
			cause = errServerClosed
		}
		c.end(cause)
	}
}

// stop stops the transport for cause (nil: it ends by itself); the
// connection calls it when it ends or a newer transport takes over.
func (t *wsTransport) stop(cause error) {
	if cause != nil {
		t.cause.CompareAndSwap(nil, &cause)
	}
	t.kill()
}

// stopCause is why the transport was stopped; nil if it was not.
func (t *wsTransport) stopCause() error {
	if p := t.cause.Load(); p != nil {
		return *p
	}
	return nil
}

// kill makes the socket's reads and writes fail now.
func (t *wsTransport) kill() {
	t.dead.Store(true)
	_ = t.nc.SetDeadline(aLongTimeAgo)
}

// readOne hands the client's next message to the connection; more
// reports that reading goes on. Otherwise err says why it ended, and last
// that the connection's last message (a handshake refusal, a Close) is
// queued: the writer sends it and a Close frame, and readOne waits for the
// client's Close frame before it returns.
func (t *wsTransport) readOne() (err error, last, more bool) {
	c, o := t.c, &t.s.o
	if !t.armRead(o.clientTimeout) {
		return t.why(io.EOF), false, false
	}
	mp := readBufs.Get().(*[]byte)
	defer func() {
		if cap(*mp) == readBufSize {
			*mp = (*mp)[:readBufSize]
			readBufs.Put(mp)
		}
	}()
	*mp, _, err = t.fr.next((*mp)[:0], t.pong)
	switch {
	case errors.Is(err, errTooLarge):
		if c.codecNow() == nil {
			err = c.refuseHandshake(errors.New("Handshake request is too large."), ws.StatusMessageTooBig)
		} else {
			err = c.tooLarge()
		}
		return err, t.drain(), false
	case err != nil:
		return t.why(err), false, false
	}
	if err := c.receive(*mp, o); err != nil {
		return err, t.drain(), false
	}
	t.fr.release()
	return nil, false, true
}

// why names the reason a read failed: the transport's end, the writer's
// failure, a client timeout, or the read's own error. A protocol error
// gets the client a Close frame saying so.
func (t *wsTransport) why(err error) error {
	var pe ws.ProtocolError
	switch {
	case t.stopCause() != nil:
		return t.stopCause()
	case t.dead.Load():
		t.wmu.Lock()
		defer t.wmu.Unlock()
		if t.werr != nil {
			return t.werr
		}
		return err
	case errors.Is(err, errWSClose):
		var cf *wsCloseFrame
		errors.As(err, &cf)
		code := cf.code
		if code == ws.StatusNoStatusRcvd || code == 0 {
			code = ws.StatusNormalClosure
		}
		_ = t.sendClose(code) // answered, unless ours went out first
		return err
	case errors.As(err, &pe):
		_ = t.sendClose(ws.StatusProtocolError)
		return err
	case t.closeSent.Load():
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errClientTimeout
	}
	return err
}

// drain waits, after the connection's last message was queued, for the
// writer to send it with a Close frame and for the client to answer with
// its own (or go, or time out); the client's data meanwhile is dropped.
func (t *wsTransport) drain() bool {
	_ = t.nc.SetReadDeadline(time.Now().Add(writeTimeout + closeWait))
	var buf []byte
	for {
		var err error
		buf, _, err = t.fr.next(buf[:0], t.pong)
		if errors.Is(err, errWSClose) {
			// The client closed as well: the writer's Close frame answers
			// it once what is queued is out (closing before would cut it).
			t.writers.Wait()
			_ = t.sendClose(ws.StatusNormalClosure)
		}
		if err != nil {
			return true
		}
	}
}

// armRead moves the read deadline to the client timeout from now (at
// most once per rearmAfter), unless a Close frame went out (its own
// deadline runs). false: the transport has ended.
func (t *wsTransport) armRead(timeout time.Duration) bool {
	if t.closeSent.Load() {
		return !t.dead.Load()
	}
	if dl := time.Now().Add(timeout); dl.Sub(t.rdl) >= rearmAfter || timeout < 4*rearmAfter {
		t.rdl = dl
		_ = t.nc.SetReadDeadline(dl)
	}
	return !t.dead.Load()
}

// pong answers a client's Ping.
func (t *wsTransport) pong(p []byte) error {
	var b [ws.MaxHeaderSize + ws.MaxControlFramePayloadSize]byte
	return t.send(append(appendFrameHeader(b[:0], ws.OpPong, len(p)), p...), nil, false)
}

// sendClose writes a Close frame with code, unless one went out already.
func (t *wsTransport) sendClose(code ws.StatusCode) error {
	var b [4]byte
	out := append(appendFrameHeader(b[:0], ws.OpClose, 2), byte(code>>8), byte(code))
	return t.send(out, nil, true)
}

// send writes a then b (when not nil) on the socket as one frame, with a
// write deadline; closing marks a Close frame, after which nothing more
// is written and the client gets closeWait to answer.
func (t *wsTransport) send(a, b []byte, closing bool) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if t.werr != nil {
		return t.werr
	}
	if t.closeSent.Load() {
		return errServerClosed
	}
	now := time.Now()
	// A write gets between writeTimeout/2 and writeTimeout: the deadline
	// moves on once per half of it, not per write (a fan-out writes to
	// every connection often).
	if dl := now.Add(writeTimeout); dl.Sub(t.wdl) >= writeTimeout/2 {
		t.wdl = dl
		_ = t.nc.SetWriteDeadline(dl)
	}
	if t.dead.Load() {
		return errServerClosed
	}
	_, err := t.nc.Write(a)
	if err == nil && b != nil {
		_, err = t.nc.Write(b)
	}
	if err != nil {
		t.werr = err
		t.dead.Store(true)
		_ = t.nc.SetReadDeadline(aLongTimeAgo) // the reader stops too
		return err
	}
	if closing {
		t.closeSent.Store(true)
		_ = t.nc.SetReadDeadline(now.Add(closeWait))
	}
	return nil
}

// startWriter starts a writer; the queue calls it, under its lock, when
// there is something to send and no writer runs.
func (t *wsTransport) startWriter() {
	t.writers.Add(1)
	go t.write()
}

// write sends what is queued, whole messages joined up to maxWriteBatch
// bytes per WebSocket message, until the queue is empty (it parks: the
// next push starts a new writer), closed (a Close frame goes last), or a
// write fails.
func (t *wsTransport) write() {
	defer t.writers.Done()
	sc := writeBufs.Get().(*writeScratch)
	defer func() {
		clear(sc.frames)
		if cap(sc.frames) > 256 {
			sc.frames = nil
		}
		if cap(sc.buf) > maxWriteBatch+ws.MaxHeaderSize {
			sc.buf = nil
		}
		writeBufs.Put(sc)
	}()
	c := t.c
	// The codec is set before the queue lets anything but a handshake
	// refusal out, and never changes after: read once per writer.
	op := ws.OpText
	if cd := c.codecNow(); cd != nil && cd.binary() {
		op = ws.OpBinary
	}
	for {
		frames, last, code, stale, parked := c.q.takeOrPark(t.gen, sc.frames)
		sc.frames = frames
		if stale || parked {
			return
		}
		for i := 0; i < len(frames); {
			n, j := len(frames[i]), i+1
			for ; j < len(frames) && n+len(frames[j]) <= maxWriteBatch; j++ {
				n += len(frames[j])
			}
			var err error
			if n > maxWriteBatch {
				// One large message: its header, then itself.
				var h [ws.MaxHeaderSize]byte
				err = t.send(appendFrameHeader(h[:0], op, n), frames[i], false)
			} else {
				b := appendFrameHeader(sc.buf[:0], op, n)
				for _, f := range frames[i:j] {
					b = append(b, f...)
				}
				sc.buf = b
				err = t.send(b, nil, false)
			}
			if err != nil {
				return
			}
			i = j
		}
		clear(frames)
		if last {
			_ = t.sendClose(code)
			return
		}
		c.lastWrite.Store(t.s.ticks.Load())
	}
}

var errClientTimeout = errors.New("client timeout: no message within the client timeout")

// errTooLarge is a client message or record over maxReceive.
var errTooLarge = errors.New("message too large")

func (c *conn) isStateful() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stateful
}

// keepAliveLoop pings every WebSocket client that got nothing for the
// keep-alive interval (the clients' server timeout is twice that). One
// loop for all connections: a timer per connection reset on every write
// cost more than this sweep, under fan-out.
func (s *Server) keepAliveLoop(ctx context.Context) {
	every := min(max(s.o.keepAlive/4, time.Millisecond), time.Second)
	after := int64((s.o.keepAlive + every - 1) / every)
	tickLoop(ctx, every, func(time.Time) {
		tick := s.ticks.Add(1)
		s.reg.eachLive(func(c *conn) {
			if last := c.lastWrite.Load(); last != 0 && tick-last >= after {
				c.lastWrite.Store(tick)
				if cd := c.wsCodec(); cd != nil {
					c.push(cd.ping(), false)
				}
			}
		})
	})
}

// wsCodec is the codec of a connection with a WebSocket attached and its
// handshake done; nil otherwise.
func (c *conn) wsCodec() codec {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kind != transportWebSockets || c.attached == 0 || c.ended {
		return nil
	}
	return c.codec
}
