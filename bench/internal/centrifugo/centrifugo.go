// Package centrifugo runs the Centrifugo server the benchmarks race
// against, as a user deploys it: the released version built with go install
// into a cache folder (once, a few minutes), its own process pinned to the
// server core, published to over its HTTP API.
package centrifugo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/changecast/changecast/bench/internal/benchenv"
)

// Version is the server raced against.
const Version = "v6.9.1"

// Server is a running Centrifugo.
type Server struct {
	Addr   string
	Secret string // HMAC key of client connection tokens
	apiKey string
	cmd    *exec.Cmd
	dir    string
	hc     *http.Client
}

// Binary is the server's binary in the cache folder
// ($CHANGECAST_BENCH_CACHE, default ~/.cache/changecast-bench), built when
// missing.
func Binary() string {
	dir, bin := cached()
	if Built() {
		return bin
	}
	fmt.Printf("building Centrifugo %s into %s (go install; a few minutes, once)...\n", Version, dir)
	start := time.Now()
	tmp, err := os.MkdirTemp("", "centrifugo-gobin")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command("go", "install", "github.com/centrifugal/centrifugo/v6@"+Version)
	cmd.Dir = tmp // outside any module: pkg@version ignores go.mod anyway
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		log.Fatalf("go install centrifugo: %v", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Fatal(err)
	}
	if err := os.Rename(filepath.Join(tmp, "centrifugo"), bin); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("built Centrifugo %s in %v\n", Version, time.Since(start).Round(time.Second))
	return bin
}

// Built reports whether the binary is in the cache folder already (Start
// would not build it).
func Built() bool {
	_, bin := cached()
	_, err := os.Stat(bin)
	return err == nil
}

// cached is the cache folder and the binary's path in it.
func cached() (dir, bin string) {
	dir = os.Getenv("CHANGECAST_BENCH_CACHE")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "changecast-bench")
	}
	return dir, filepath.Join(dir, "centrifugo-"+Version)
}

// Start runs the server on a free loopback port with a config of the same
// shape as the built-in hub's in the benchmarks: HMAC client tokens,
// client-side subscriptions to channels, the HTTP API with a key, logging
// errors only; everything else at its defaults.
func Start() *Server {
	bin := Binary()
	dir, err := os.MkdirTemp("", "centrifugo-bench")
	if err != nil {
		log.Fatal(err)
	}
	port := benchenv.FreePort()
	s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), Secret: "bench-hmac-secret-0123456789abcdef", apiKey: "bench-api-key", dir: dir,
		hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	cfg := map[string]any{
		"http_server": map[string]any{"address": "127.0.0.1", "port": port},
		"log":         map[string]any{"level": "error"},
		"client":      map[string]any{"token": map[string]any{"hmac_secret_key": s.Secret}, "allowed_origins": []string{"*"}},
		"http_api":    map[string]any{"key": s.apiKey},
		"channel":     map[string]any{"without_namespace": map[string]any{"allow_subscribe_for_client": true}},
	}
	b, _ := json.Marshal(cfg)
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		log.Fatal(err)
	}
	s.cmd = benchenv.Command(benchenv.ServerCore, bin, "--config", path)
	s.cmd.Stdout, s.cmd.Stderr = os.Stderr, os.Stderr
	if err := s.cmd.Start(); err != nil {
		log.Fatal(err)
	}
	benchenv.WaitTCP(s.Addr, 30*time.Second)
	return s
}

// Pid is the server's process id.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// WebSocketURL is where clients connect.
func (s *Server) WebSocketURL() string { return "ws://" + s.Addr + "/connection/websocket" }

// Publish sends data (JSON) to channel through the HTTP API.
func (s *Server) Publish(ctx context.Context, channel string, data []byte) error {
	body := append(append([]byte(`{"channel":"`+channel+`","data":`), data...), '}')
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.Addr+"/api/publish", bytes.NewReader(body))
	req.Header.Set("X-API-Key", s.apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || bytes.Contains(out, []byte(`"error"`)) {
		return fmt.Errorf("centrifugo publish: %s: %s", resp.Status, out)
	}
	return nil
}

// Stop ends the server.
func (s *Server) Stop() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
	os.RemoveAll(s.dir)
}
