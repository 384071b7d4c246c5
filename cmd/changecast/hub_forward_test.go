package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/changecast/changecast/publish/snapshot"
)

// Issue 21: a stand-alone hub node with hub.peers answers its clients'
// /snapshot and /changes by the workers, the caller's request passed on
// (path, query, credentials) and marked forwarded.
func TestHubCommandForwardsToWorkers(t *testing.T) {
	t.Setenv(envHubKey, "")
	var mu sync.Mutex
	var seen []string
	worker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.RequestURI()+" "+r.Header.Get(snapshot.ForwardedHeader)+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"from":"worker"}`)
	}))
	defer worker.Close()
	cfg := filepath.Join(t.TempDir(), "hub.yaml")
	if err := os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\nhubs: [orders]\nnegotiate: {auth: {anonymous: true}}\npeers: [\""+worker.URL+"\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := runHub(t, "-hub-config", cfg)
	neg := regexp.MustCompile(`negotiate: POST (\S+)/negotiate\?hub=HUB`).FindStringSubmatch(out.String())
	if neg == nil {
		t.Fatalf("stdout:\n%s", out)
	}
	for _, path := range []string{"/snapshot?hub=orders&limit=5", "/changes?hub=orders&after=3"} {
		req, _ := http.NewRequest("GET", neg[1]+path, nil)
		req.Header.Set("Authorization", "Bearer abc")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != `{"from":"worker"}` {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"/api/snapshot?hub=orders&limit=5 1 Bearer abc", "/api/changes?hub=orders&after=3 1 Bearer abc"}
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the worker saw\n%s\nwant\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
}
