// Command fanout compares the built-in hub's fan-out with Centrifugo's
// (the centrifuge library that Centrifugo v6 is built on, in-process, memory
// broker) in the same run: N WebSocket clients on loopback each receive M
// messages of about the same size; it prints deliveries per second of each
// and their ratio. It is its own module so the main one does not depend on
// centrifuge.
//
//	cd bench/fanout && go run . -clients 2000 -messages 200
//
// The target (ARCHITECTURE.md §9): the hub delivers at least as many
// messages per second as Centrifugo (ratio ≥ 1.0).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/centrifugal/centrifuge"
	centrifugego "github.com/centrifugal/centrifuge-go"
	"github.com/coder/websocket"

	"github.com/changecast/changecast/bench/internal/benchenv"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/publish/signalr"
	"github.com/changecast/changecast/schema/wire"
)

var (
	clients  = flag.Int("clients", 2000, "WebSocket clients")
	messages = flag.Int("messages", 200, "messages each client receives")
)

// payload is one change of about 400 bytes, the same for both systems.
func payload(i int) wire.Entry {
	return wire.Entry{Op: wire.OpUpsert, Collection: "public.orders", ID: fmt.Sprint(i), V: fmt.Sprintf("%d.1", 1000+i),
		Doc: json.RawMessage(fmt.Sprintf(`{"id":%d,"status":"shipped","customer":"Grace Hopper","items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}],"note":"%s"}`, i, strings.Repeat("x", 200)))}
}

func main() {
	flag.Parse()
	cent := runCentrifuge()
	own := runHub()
	fmt.Printf("%d clients × %d messages\n", *clients, *messages)
	fmt.Printf("centrifuge v0.40.1 (Centrifugo v6's engine): %9.0f deliveries/s\n", cent)
	fmt.Printf("changecast built-in hub:                    %9.0f deliveries/s\n", own)
	fmt.Printf("ratio hub/centrifuge: %.2f (target ≥ 1.00)\n", own/cent)
}

func serve(h http.Handler) (addr string, stop func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close() }
}

// wait blocks until got reaches want or a minute passes; it returns the
// deliveries per second since start.
func wait(got *atomic.Int64, want int64, start time.Time) float64 {
	deadline := time.Now().Add(time.Minute)
	for got.Load() < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got.Load() < want {
		log.Printf("only %d of %d delivered in a minute", got.Load(), want)
	}
	return float64(got.Load()) / time.Since(start).Seconds()
}

func runCentrifuge() float64 {
	node, err := centrifuge.New(centrifuge.Config{LogLevel: centrifuge.LogLevelNone})
	if err != nil {
		log.Fatal(err)
	}
	node.OnConnecting(func(ctx context.Context, e centrifuge.ConnectEvent) (centrifuge.ConnectReply, error) {
		return centrifuge.ConnectReply{Credentials: &centrifuge.Credentials{UserID: "u"}}, nil
	})
	node.OnConnect(func(c *centrifuge.Client) {
		c.OnSubscribe(func(e centrifuge.SubscribeEvent, cb centrifuge.SubscribeCallback) {
			cb(centrifuge.SubscribeReply{}, nil)
		})
	})
	if err := node.Run(); err != nil {
		log.Fatal(err)
	}
	defer node.Shutdown(context.Background())
	mux := http.NewServeMux()
	mux.Handle("/connection/websocket", centrifuge.NewWebsocketHandler(node, centrifuge.WebsocketConfig{}))
	addr, stop := serve(mux)
	defer stop()

	var got atomic.Int64
	var subscribed sync.WaitGroup
	var cs []*centrifugego.Client
	for i := 0; i < *clients; i++ {
		c := centrifugego.NewJsonClient("ws://"+addr+"/connection/websocket", centrifugego.Config{})
		sub, err := c.NewSubscription("orders")
		if err != nil {
			log.Fatal(err)
		}
		subscribed.Add(1)
		var once sync.Once
		sub.OnSubscribed(func(centrifugego.SubscribedEvent) { once.Do(subscribed.Done) })
		sub.OnPublication(func(e centrifugego.PublicationEvent) {
			var ch wire.Entry
			if json.Unmarshal(e.Data, &ch) == nil {
				got.Add(1)
			}
		})
		if err := c.Connect(); err != nil {
			log.Fatal(err)
		}
		if err := sub.Subscribe(); err != nil {
			log.Fatal(err)
		}
		cs = append(cs, c)
	}
	subscribed.Wait()
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	start := time.Now()
	for i := 0; i < *messages; i++ {
		data, _ := json.Marshal(payload(i))
		if _, err := node.Publish("orders", data); err != nil {
			log.Fatal(err)
		}
	}
	return wait(&got, int64(*clients)*int64(*messages), start)
}

func runHub() float64 {
	h, addr, stop := benchenv.Hub()
	defer stop()
	aud := "http://" + addr + "/client/?hub=orders"

	var got atomic.Int64
	var ready sync.WaitGroup
	cctx, stopClients := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { stopClients(); wg.Wait() }()
	for i := 0; i < *clients; i++ {
		tok, err := signalr.SignAccessToken(h.AccessKey(), aud, fmt.Sprintf("u%d", i), time.Hour, time.Now())
		if err != nil {
			log.Fatal(err)
		}
		ready.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _, err := websocket.Dial(cctx, "ws://"+addr+"/client/?hub=orders&access_token="+tok, nil)
			if err != nil {
				log.Fatalf("dial: %v", err)
			}
			defer c.CloseNow()
			c.SetReadLimit(16 << 20)
			c.Write(cctx, websocket.MessageText, []byte("{\"protocol\":\"json\",\"version\":1}\x1e"))
			first := true
			for {
				_, data, err := c.Read(cctx)
				if err != nil {
					if first {
						ready.Done()
					}
					return
				}
				if first { // the handshake answer
					first = false
					ready.Done()
					continue
				}
				for _, rec := range bytes.Split(data, []byte{0x1e}) {
					var inv struct {
						Type      int             `json:"type"`
						Arguments []wire.Envelope `json:"arguments"`
					}
					if len(rec) > 0 && json.Unmarshal(rec, &inv) == nil && inv.Type == 1 && len(inv.Arguments) == 1 {
						got.Add(int64(len(inv.Arguments[0].Changes)))
					}
				}
			}
		}()
	}
	ready.Wait()
	pub := h.Publisher()
	start := time.Now()
	for i := 0; i < *messages; i++ {
		b, err := publish.NewBatch(publish.Audience{Hub: "orders", Method: "changes"}, wire.Envelope{Source: "bench", Hub: "orders", Changes: []wire.Entry{payload(i)}})
		if err != nil {
			log.Fatal(err)
		}
		if err := pub.Publish(context.Background(), b); err != nil {
			log.Fatal(err)
		}
	}
	return wait(&got, int64(*clients)*int64(*messages), start)
}
