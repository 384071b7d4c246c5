package benchenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/changecast/changecast/schema/config"
	"github.com/changecast/changecast/worker"
)

// Worker is a whole changecast (worker.Run, in this process) streaming a
// table of the benchmark database to its built-in hub, with JWT negotiate
// granting group tenant-{tid}: what an app's clients talk to.
type Worker struct {
	// Base is the negotiate base URL: Base+"/snapshot", Base+"/changes".
	Base string
	stop func()
}

const workerSecret = "a-benchmark-secret-of-32-bytes-or-more"

// StartWorker streams table (mapped to hub orders, group tenant-{/tenant})
// through slot and publication, with extra appended to the config (YAML
// top-level sections), and returns once snapshots are served.
func (d *DB) StartWorker(table, slot, publication, extra string) *Worker {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	yaml := fmt.Sprintf(`
source:
  postgres: {url: %q, slot: %s, publication: %s, tables: [%s], heartbeat: 1s, statusInterval: 500ms}
mappings:
  - {collection: %s, hub: orders, group: "tenant-{/tenant}"}
publish:
  target: hub
hub:
  listen: %q
  accessKey: "a-benchmark-access-key-of-32-bytes-long"
  limits: {maxReadsPerCaller: 1000} # bench/resume's 100 clients read as one user
  negotiate:
    path: /api
    auth: {jwt: {hs256Secret: %q, issuer: bench, audience: bench}}
    groups: ["tenant-{claims.tid}"]
%s`, d.URL, slot, publication, table, table, addr, workerSecret, extra)
	cfg, err := config.Parse([]byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		log.Fatal(err)
	}
	d.slots = append(d.slots, slot)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- worker.Run(ctx, cfg, worker.Options{Logger: Quiet}) }()
	w := &Worker{Base: "http://" + addr + "/api", stop: func() {
		cancel()
		if err := <-done; err != nil {
			log.Printf("worker: %v", err)
		}
	}}
	// Snapshots answer 503 until the stream runs.
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-done:
			log.Fatalf("worker stopped: %v", err)
		default:
		}
		if code := w.status("/snapshot?hub=orders&collection=" + table + "&id=-1"); code != 0 && code != http.StatusServiceUnavailable {
			return w
		}
		if time.Now().After(deadline) {
			log.Fatal("the worker did not start streaming in 60 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (w *Worker) status(path string) int {
	resp, err := w.Get("probe", path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Get requests Base+path as a user of tenant tid.
func (w *Worker) Get(tid, path string) (*http.Response, error) {
	req, err := http.NewRequest("GET", w.Base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+Token(tid))
	return http.DefaultClient.Do(req)
}

// Read requests Base+path as a user of tenant tid and returns the body,
// or exits unless the answer is 200.
func (w *Worker) Read(tid, path string) []byte {
	resp, err := w.Get(tid, path)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if resp.ContentLength > 0 {
		buf.Grow(int(resp.ContentLength) + bytes.MinRead)
	}
	_, err = buf.ReadFrom(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		log.Fatalf("GET %s: %d %v %s", path, resp.StatusCode, err, buf.Bytes())
	}
	return buf.Bytes()
}

// Snapshot reads every page of group's snapshot as a user of tenant tid,
// decoding each document as a client does, and returns how many
// documents and bytes it read.
func (w *Worker) Snapshot(tid, group string) (docs int, size int64) {
	cursor := ""
	for {
		path := "/snapshot?hub=orders&group=" + url.QueryEscape(group)
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		body := w.Read(tid, path)
		var page struct {
			Docs []struct {
				Doc map[string]any `json:"doc"`
			} `json:"docs"`
			Next string `json:"next"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			log.Fatalf("GET %s: %v", path, err)
		}
		docs += len(page.Docs)
		size += int64(len(body))
		if page.Next == "" {
			return docs, size
		}
		cursor = page.Next
	}
}

// Token is a negotiate token of a user of tenant tid.
func Token(tid string) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "bench-" + tid, "tid": tid, "iss": "bench", "aud": "bench",
		"exp": time.Now().Add(time.Hour).Unix(),
	})
	s, err := tok.SignedString([]byte(workerSecret))
	if err != nil {
		log.Fatal(err)
	}
	return s
}

// Stop stops the worker and waits for it.
func (w *Worker) Stop() { w.stop() }
