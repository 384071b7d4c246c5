// Command loadclient is the benchmarks' out-of-process load: N raw
// WebSocket clients that speak either the SignalR JSON hub protocol (the
// built-in hub, Azure SignalR) or Centrifugo's JSON protocol, decode every
// message's JSON into the same envelope type the same way, and time every
// change by its "ts" (RFC 3339, same machine's clock): commit time for
// changes from a database, send time for messages a benchmark published.
// It runs in its own process so that the server under test gets the same
// CPU as its peer; the bench drivers start it (pinned to the other core)
// and talk to it over stdin/stdout:
//
//	stdout: "ready OK FAILED" once every client connected (and subscribed)
//	stdin:  "reset"  → zero the counters, answers "ok"
//	        "report" → one JSON line (see report)
//	        "quit"   → close the clients and exit
//
// SignalR: -url ws://HOST/client/?hub=orders -key ACCESSKEY signs a client
// token per user (u0…u{N-1}); group membership is the server's (the driver
// adds users to groups over REST). Centrifugo: -url
// ws://HOST/connection/websocket -key HMACSECRET; client i subscribes to
// channel g{i mod groups} (or "all" with -groups 0).
//
// Idle connections (bench/idle): -idle stops after the handshake (no
// Centrifugo subscription), -first K names the users u{K}… so several
// processes can share one server, and -sources N spreads the connections
// over the source addresses 127.0.0.1…127.0.0.N (each has its own
// ephemeral ports).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/changecast/changecast/bench/internal/benchenv"
	"github.com/changecast/changecast/publish/signalr"
)

// envelope is what both protocols carry: changecast's batch envelope,
// decoded the same way on both sides.
type envelope struct {
	Source  string `json:"source"`
	Hub     string `json:"hub"`
	Group   string `json:"group"`
	Changes []struct {
		Op         string          `json:"op"`
		Collection string          `json:"collection"`
		ID         string          `json:"id"`
		V          string          `json:"v"`
		PV         string          `json:"pv"`
		Patch      json.RawMessage `json:"patch"`
		Doc        json.RawMessage `json:"doc"`
		TS         string          `json:"ts"`
	} `json:"changes"`
}

// signalrRecord is one SignalR JSON hub protocol message.
type signalrRecord struct {
	Type      int        `json:"type"`
	Target    string     `json:"target"`
	Arguments []envelope `json:"arguments"`
}

// centrifugoReply is one Centrifugo JSON protocol reply or push.
type centrifugoReply struct {
	ID    uint32          `json:"id"`
	Error json.RawMessage `json:"error"`
	Push  *struct {
		Channel string `json:"channel"`
		Pub     *struct {
			Data   envelope `json:"data"`
			Offset uint64   `json:"offset"`
		} `json:"pub"`
	} `json:"push"`
}

func main() {
	proto := flag.String("proto", "signalr", "signalr or centrifugo")
	url := flag.String("url", "", "WebSocket URL")
	key := flag.String("key", "", "token key: the hub's access key, or Centrifugo's HMAC secret")
	n := flag.Int("clients", 100, "clients")
	groups := flag.Int("groups", 0, "centrifugo: channels g0…g{groups-1}, client i in g{i mod groups}; 0: all in channel \"all\"")
	dials := flag.Int("dials", 50, "connections opened at once")
	first := flag.Int("first", 0, "index of the first client: users u{first}…")
	sources := flag.Int("sources", 1, "source addresses 127.0.0.1…127.0.0.{sources}, client i on 127.0.0.{1 + i mod sources}")
	flag.BoolVar(&idle, "idle", false, "centrifugo: connect without subscribing (idle connections)")
	flag.Parse()
	if *sources < 1 || *sources > 250 {
		log.Fatal("loadclient: -sources must be 1…250")
	}
	for i := range *sources {
		clientsBySource = append(clientsBySource, sourceClient(i+1))
	}
	if *url == "" || *key == "" {
		log.Fatal("loadclient: -url and -key are required")
	}
	st := newStats()
	ctx, cancel := context.WithCancel(context.Background())
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		conns   []*websocket.Conn
		failed  atomic.Int64
		readyWG sync.WaitGroup
		sem     = make(chan struct{}, *dials)
	)
	for i := 0; i < *n; i++ {
		wg.Add(1)
		readyWG.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			var once sync.Once
			ready := func() { once.Do(func() { <-sem; readyWG.Done() }) }
			defer ready()
			c, err := dial(ctx, *proto, *url, *key, *first+i, *groups)
			if err != nil {
				failed.Add(1)
				if failed.Load() <= 3 {
					log.Printf("loadclient: client %d: %v", i, err)
				}
				return
			}
			defer c.CloseNow()
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			var rerr error
			if *proto == "centrifugo" {
				rerr = readCentrifugo(ctx, c, st, ready)
			} else {
				rerr = readSignalR(ctx, c, st, ready)
			}
			if rerr != nil && ctx.Err() == nil {
				if n := failed.Add(1); n <= 3 || n%100 == 0 {
					log.Printf("loadclient: client %d: %v (%d clients lost so far)", i, rerr, n)
				}
			}
		}()
	}
	readyWG.Wait()
	fmt.Printf("ready %d %d\n", *n-int(failed.Load()), failed.Load())

	// Keep-alives: SignalR servers drop a client silent for 30 s.
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if *proto != "signalr" {
					continue // Centrifugo's server pings; readCentrifugo answers
				}
				mu.Lock()
				cs := append([]*websocket.Conn(nil), conns...)
				mu.Unlock()
				for _, c := range cs {
					wctx, stop := context.WithTimeout(ctx, 10*time.Second) // the client core is saturated in a throughput phase: a tight bound lost clients
					c.Write(wctx, websocket.MessageText, []byte("{\"type\":6}\x1e"))
					stop()
				}
			}
		}
	}()

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "reset":
			st.reset()
			fmt.Println("ok")
		case "report":
			b, _ := json.Marshal(st.report(failed.Load()))
			fmt.Println(string(b))
		case "quit":
			cancel()
			wg.Wait()
			return
		}
	}
	cancel()
	wg.Wait()
}

func dial(ctx context.Context, proto, url, key string, i, groups int) (*websocket.Conn, error) {
	user := fmt.Sprintf("u%d", i)
	var first []byte
	switch proto {
	case "signalr":
		// The token's audience is the client endpoint as negotiate gives it.
		aud := "http" + url[len("ws"):]
		if q := bytes.IndexByte([]byte(aud), '&'); q >= 0 {
			aud = aud[:q]
		}
		tok, err := signalr.SignAccessToken(key, aud, user, time.Hour, time.Now())
		if err != nil {
			return nil, err
		}
		url += "&access_token=" + tok
		first = []byte("{\"protocol\":\"json\",\"version\":1}\x1e")
	case "centrifugo":
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(key))
		if err != nil {
			return nil, err
		}
		ch := "all"
		if groups > 0 {
			ch = fmt.Sprintf("g%d", i%groups)
		}
		first = fmt.Appendf(nil, `{"id":1,"connect":{"token":%q,"name":"loadclient"}}`+"\n"+`{"id":2,"subscribe":{"channel":%q}}`, tok, ch)
		if idle {
			first = fmt.Appendf(nil, `{"id":1,"connect":{"token":%q,"name":"loadclient"}}`, tok)
		}
	default:
		return nil, fmt.Errorf("unknown protocol %q", proto)
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(dctx, url, &websocket.DialOptions{HTTPClient: clientsBySource[i%len(clientsBySource)]})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(16 << 20)
	if err := c.Write(dctx, websocket.MessageText, first); err != nil {
		c.CloseNow()
		return nil, err
	}
	return c, nil
}

var (
	idle            bool
	clientsBySource []*http.Client
)

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT (not in package
// syscall): a socket bound to a source address takes its port at connect,
// so ports are shared across destinations as an unbound socket's are.
const ipBindAddressNoPort = 24

// sourceClient dials from 127.0.0.{n}: one address has about 28,000
// ephemeral ports, fewer than a run of idle connections may need.
func sourceClient(n int) *http.Client {
	d := &net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(n))},
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
			}); err != nil {
				return err
			}
			return serr
		},
	}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

// readSignalR reads the handshake answer (then calls ready) and every
// invocation after it.
func readSignalR(ctx context.Context, c *websocket.Conn, st *stats, ready func()) error {
	handshake := true
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			return err
		}
		now := time.Now()
		for len(data) > 0 {
			i := bytes.IndexByte(data, 0x1e)
			if i < 0 {
				return fmt.Errorf("record without separator: %.100q", data)
			}
			rec := data[:i]
			data = data[i+1:]
			if handshake {
				handshake = false
				if !bytes.Equal(rec, []byte("{}")) {
					return fmt.Errorf("handshake refused: %s", rec)
				}
				ready()
				continue
			}
			var m signalrRecord
			if err := json.Unmarshal(rec, &m); err != nil {
				st.decodeError()
				continue
			}
			if m.Type == 1 && len(m.Arguments) == 1 {
				st.envelope(&m.Arguments[0], now)
			}
		}
	}
}

// readCentrifugo reads the connect and subscribe replies (then calls
// ready) and every push after them; it answers the server's pings.
func readCentrifugo(ctx context.Context, c *websocket.Conn, st *stats, ready func()) error {
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			return err
		}
		now := time.Now()
		for len(data) > 0 {
			line := data
			if i := bytes.IndexByte(data, '\n'); i >= 0 {
				line, data = data[:i], data[i+1:]
			} else {
				data = nil
			}
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			var m centrifugoReply
			if err := json.Unmarshal(line, &m); err != nil {
				st.decodeError()
				continue
			}
			switch {
			case len(m.Error) > 0:
				return fmt.Errorf("centrifugo error: %s", m.Error)
			case m.ID == 2 || (idle && m.ID == 1):
				ready()
			case m.ID == 0 && m.Push == nil:
				// A ping: answer with a pong.
				c.Write(ctx, websocket.MessageText, []byte("{}"))
			case m.Push != nil && m.Push.Pub != nil:
				st.envelope(&m.Push.Pub.Data, now)
			}
		}
	}
}

// stats are latency histograms, sharded so clients rarely contend.
type stats struct {
	shards [16]shard
	next   atomic.Uint32
	errs   atomic.Int64
}

type shard struct {
	mu          sync.Mutex
	h           []uint64
	n           int64
	first, last int64 // unix ns of deliveries
	_           [64]byte
}

// Buckets: 1 µs wide to 1 ms, 10 µs to 100 ms, 1 ms to 60 s.
const nBuckets = 1000 + 9900 + 59900

func bucket(us int64) int {
	switch {
	case us < 0:
		return 0
	case us < 1000:
		return int(us)
	case us < 100_000:
		return 1000 + int(us-1000)/10
	case us < 60_000_000:
		return 10900 + int(us-100_000)/1000
	}
	return nBuckets - 1
}

func bucketValue(i int) time.Duration {
	switch {
	case i < 1000:
		return time.Duration(i) * time.Microsecond
	case i < 10900:
		return time.Duration(1000+(i-1000)*10) * time.Microsecond
	}
	return time.Duration(100_000+(i-10900)*1000) * time.Microsecond
}

func newStats() *stats {
	s := &stats{}
	for i := range s.shards {
		s.shards[i].h = make([]uint64, nBuckets)
	}
	return s
}

func (s *stats) decodeError() { s.errs.Add(1) }

// envelope times every change of e, received at now.
func (s *stats) envelope(e *envelope, now time.Time) {
	sh := &s.shards[s.next.Add(1)%uint32(len(s.shards))]
	nowNs := now.UnixNano()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for i := range e.Changes {
		ts, err := time.Parse(time.RFC3339Nano, e.Changes[i].TS)
		if err != nil {
			s.errs.Add(1)
			continue
		}
		sh.h[bucket(now.Sub(ts).Microseconds())]++
		sh.n++
		if sh.first == 0 || nowNs < sh.first {
			sh.first = nowNs
		}
		sh.last = max(sh.last, nowNs)
	}
}

func (s *stats) reset() {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		clear(sh.h)
		sh.n, sh.first, sh.last = 0, 0, 0
		sh.mu.Unlock()
	}
	s.errs.Store(0)
}

// report is what "report" prints: the type the drivers read
// (benchenv.Report).
type report = benchenv.Report

func (s *stats) report(failed int64) report {
	h := make([]uint64, nBuckets)
	var r report
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for j, v := range sh.h {
			h[j] += v
		}
		r.Deliveries += sh.n
		if sh.first != 0 && (r.First == 0 || sh.first < r.First) {
			r.First = sh.first
		}
		r.Last = max(r.Last, sh.last)
		sh.mu.Unlock()
	}
	r.DecodeErrors, r.Failed = s.errs.Load(), failed
	pct := func(p float64) int64 {
		want := uint64(float64(r.Deliveries)*p + 0.5)
		want = max(want, 1)
		var acc uint64
		for i, v := range h {
			acc += v
			if acc >= want {
				return bucketValue(i).Microseconds()
			}
		}
		return 0
	}
	if r.Deliveries > 0 {
		r.P50, r.P90, r.P99, r.P999, r.Max = pct(0.50), pct(0.90), pct(0.99), pct(0.999), pct(1)
	}
	return r
}
