package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/publish/hub"
	"github.com/changecast/changecast/schema/wire"
	"github.com/changecast/changecast/worker"
)

// TestSignalRTarget runs `changecast run` with publish.target: signalr
// against a stand-alone hub playing Azure SignalR Service (the code that
// `changecast hub` runs): a client negotiates at changecast's app negotiate,
// is sent to the service, connects there, and receives a row inserted in
// PostgreSQL.
func TestSignalRTarget(t *testing.T) {
	dbURL := testkit.Database(t)
	db := testkit.Connect(t, dbURL)
	ctx := context.Background()
	if _, err := db.Exec(ctx, "CREATE TABLE orders (id int PRIMARY KEY, status text)"); err != nil {
		t.Fatal(err)
	}

	// The "Azure SignalR Service": the built-in hub on its own.
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	svc, err := hub.New(hub.Config{Hubs: []string{"orders"}, Negotiate: hub.NegotiateConfig{Auth: hub.NegotiateAuth{Anonymous: true}}}, hub.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	sln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stopSvc := context.WithCancel(ctx)
	svcDone := make(chan error, 1)
	go func() { svcDone <- svc.Serve(sctx, sln) }()
	defer func() { stopSvc(); <-svcDone }()
	<-svc.Listening()

	nln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	negotiateAddr := nln.Addr().String()
	nln.Close()
	cfgPath := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
source:
  postgres: {url: %q, slot: sr, publication: sr, tables: [public.orders], heartbeat: -1s}
mappings: [{collection: public.orders, hub: orders}]
publish:
  target: signalr
  signalr: {connectionString: %q}
  batch: {maxDelay: 5ms}
hub:
  listen: %q
  negotiate: {auth: {anonymous: true}}
`, dbURL, svc.ConnectionString(), negotiateAddr)), 0o644)
	cfg, err := loadConfig(cfgPath, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- worker.Run(wctx, cfg, worker.Options{Stdout: &testkit.Buffer{}, Stderr: os.Stderr, Logger: quiet})
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	}()

	// App negotiate at changecast, as the official client does first.
	var info struct{ URL, AccessToken string }
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := http.Post("http://"+negotiateAddr+"/api/negotiate?hub=orders", "application/json", nil)
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&info)
			resp.Body.Close()
			if err == nil && info.URL != "" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("app negotiate: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.HasPrefix(info.URL, svc.Endpoint()+"/client/?hub=orders") {
		t.Fatalf("negotiate sent the client to %q, want the service %s", info.URL, svc.Endpoint())
	}
	wsURL := "ws" + strings.TrimPrefix(info.URL, "http") + "&access_token=" + url.QueryEscape(info.AccessToken)
	c, _, err := websocket.Dial(ctx, wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.Write(ctx, websocket.MessageText, []byte("{\"protocol\":\"json\",\"version\":1}\x1e"))

	testkit.Streaming(t, db, "sr", 30*time.Second)
	if _, err := db.Exec(ctx, "INSERT INTO orders VALUES (7, 'new')"); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		_, data, err := c.Read(rctx)
		if err != nil {
			t.Fatalf("no change arrived: %v", err)
		}
		for _, rec := range bytes.Split(data, []byte{0x1e}) {
			var inv struct {
				Type      int             `json:"type"`
				Target    string          `json:"target"`
				Arguments []wire.Envelope `json:"arguments"`
			}
			if json.Unmarshal(rec, &inv) != nil || inv.Type != 1 {
				continue
			}
			if inv.Target != "changes" || len(inv.Arguments) != 1 || len(inv.Arguments[0].Changes) != 1 {
				t.Fatalf("invocation %s", rec)
			}
			ch := inv.Arguments[0].Changes[0]
			if ch.Op != wire.OpUpsert || ch.ID != "7" || !strings.Contains(string(ch.Doc), `"status":"new"`) {
				t.Fatalf("change %+v", ch)
			}
			return
		}
	}
}
