// Package demo_test runs `make demo`'s script as a newcomer would and holds
// it to what the first minute should look like.
package demo_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/changecast/changecast/internal/testkit"
)

// line is one line of the script's stderr and when it arrived.
type line struct {
	at   time.Time
	text string
}

// makeCmd is `make target` in root as a person types it: outside any make
// (a make within make would announce its directory on stdout).
func makeCmd(t *testing.T, root, target string, env ...string) *exec.Cmd {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is not installed")
	}
	cmd := exec.Command("make", target)
	cmd.Dir = root
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MAKELEVEL" && k != "MFLAGS" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// TestDemoPrintsTheAddressOnceThePageWorks runs `make demo` on free
// ports: it says what it does step by step, prints the page's address
// within 5 s of the page answering (it waited for a health URL the hub
// answers with 400, so always 30 s), reports published changes while it
// runs, and writes nothing to stdout.
func TestDemoPrintsTheAddressOnceThePageWorks(t *testing.T) {
	testkit.NeedNode(t, "web", "@microsoft/signalr", "@changecast/client")
	root := testkit.Root(t)
	port := func() string { _, p, _ := net.SplitHostPort(testkit.FreeAddr(t)); return p }
	hub, app, ops := port(), port(), port()

	cmd := makeCmd(t, root, "demo", "DEMO_SECONDS=6", "DEMO_REPORT_SECONDS=2",
		"DEMO_HUB_PORT="+hub, "DEMO_APP_PORT="+app, "DEMO_OPS_PORT="+ops)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var lines []line
	var pageAt time.Time // when the page first answered
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, line{time.Now(), sc.Text()})
			mu.Unlock()
		}
	}()
	// Watch the page as a person pressing reload would.
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		client := &http.Client{Timeout: time.Second}
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(50 * time.Millisecond):
			}
			resp, err := client.Get("http://127.0.0.1:" + app + "/")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					mu.Lock()
					pageAt = time.Now()
					mu.Unlock()
					return
				}
			}
		}
	}()
	waitErr := make(chan error, 1)
	go func() { <-read; waitErr <- cmd.Wait() }()
	select {
	case err = <-waitErr:
	case <-time.After(3 * time.Minute):
		t.Fatal("make demo did not stop within 3 minutes of DEMO_SECONDS=6")
	}
	close(stopWatch)
	<-watched
	mu.Lock()
	defer mu.Unlock()
	var all strings.Builder
	for _, l := range lines {
		all.WriteString(l.at.Format("15:04:05.000 ") + l.text + "\n")
	}
	if err != nil {
		t.Fatalf("make demo: %v\n%s", err, all.String())
	}
	if stdout.Len() > 0 {
		t.Errorf("stdout is not empty: %q", stdout.String())
	}
	find := func(substr string) (line, bool) {
		for _, l := range lines {
			if strings.Contains(l.text, substr) {
				return l, true
			}
		}
		return line{}, false
	}
	for _, step := range []string{"demo: installing", "demo: building", "demo: starting a private PostgreSQL", "demo: starting changecast"} {
		if _, ok := find(step); !ok {
			t.Errorf("no step line %q:\n%s", step, all.String())
		}
	}
	addr, ok := find("demo: open the live page:  http://127.0.0.1:" + app + "/")
	if !ok {
		t.Fatalf("the page's address was never printed:\n%s", all.String())
	}
	if pageAt.IsZero() {
		t.Fatalf("the page never answered:\n%s", all.String())
	}
	if d := addr.at.Sub(pageAt); d > 5*time.Second {
		t.Errorf("the address came %v after the page answered, want within 5 s:\n%s", d.Round(time.Millisecond), all.String())
	}
	published := regexp.MustCompile(`^demo: published (\d+) changes$`)
	n := -1
	for _, l := range lines {
		if m := published.FindStringSubmatch(l.text); m != nil && l.at.After(addr.at) {
			n, _ = strconv.Atoi(m[1])
		}
	}
	if n <= 0 {
		t.Errorf("no \"published N changes\" line with N > 0 after the address:\n%s", all.String())
	}
}

// TestDemoCosmosStdoutIsEnvelopes runs `make demo-cosmos`: stdout holds
// envelopes, one JSON object per line, and nothing else (make echoed the
// script's name there).
func TestDemoCosmosStdoutIsEnvelopes(t *testing.T) {
	testkit.Integration(t, "make, and the Cosmos DB emulator built from this repository")
	root := testkit.Root(t)
	_, port, _ := net.SplitHostPort(testkit.FreeAddr(t))
	cmd := makeCmd(t, root, "demo-cosmos", "DEMO_SECONDS=4", "COSMOS_PORT="+port)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("make demo-cosmos: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if stdout.Len() == 0 {
		t.Fatalf("no envelope on stdout; stderr:\n%s", stderr.String())
	}
	for i, l := range lines {
		var env struct {
			Changes []json.RawMessage `json:"changes"`
		}
		if err := json.Unmarshal([]byte(l), &env); err != nil || len(env.Changes) == 0 {
			t.Fatalf("stdout line %d is not an envelope: %q", i+1, l)
		}
	}
	if !strings.Contains(stderr.String(), "demo: Cosmos DB emulator on http://127.0.0.1:"+port+"/") {
		t.Errorf("the emulator did not run on COSMOS_PORT %s:\n%s", port, stderr.String())
	}
}

// The two demos and the emulator's default do not share a port, so both
// demos run side by side (the emulator took 8081, the page's port).
func TestDemoPortsDoNotCollide(t *testing.T) {
	root := testkit.Root(t)
	read := func(path string) string {
		b, err := os.ReadFile(filepath.Join(root, path))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	def := func(src, re string) string {
		m := regexp.MustCompile(re).FindStringSubmatch(src)
		if m == nil {
			t.Fatalf("no default matching %s", re)
		}
		return m[1]
	}
	demo, cosmos, emulate := read("scripts/demo.sh"), read("scripts/demo-cosmos.sh"), read("cmd/changecast/cmd_emulate.go")
	ports := map[string]string{
		"make demo's hub":      def(demo, `DEMO_HUB_PORT:-(\d+)`),
		"make demo's page":     def(demo, `DEMO_APP_PORT:-(\d+)`),
		"make demo's /metrics": def(demo, `DEMO_OPS_PORT:-(\d+)`),
		"make demo-cosmos's":   def(cosmos, `COSMOS_PORT:-(\d+)`),
		"emulate cosmos's":     def(emulate, `"listen", "127\.0\.0\.1:(\d+)"`),
		"demo/cosmos.yaml's":   def(read("demo/cosmos.yaml"), `COSMOS_PORT:-(\d+)`),
	}
	if ports["make demo-cosmos's"] != ports["emulate cosmos's"] || ports["demo/cosmos.yaml's"] != ports["emulate cosmos's"] {
		t.Errorf("the Cosmos demo's port defaults differ: %v", ports)
	}
	seen := map[string]string{}
	for _, who := range []string{"make demo's hub", "make demo's page", "make demo's /metrics", "emulate cosmos's"} {
		if other, ok := seen[ports[who]]; ok {
			t.Errorf("%s default port %s is also %s", who, ports[who], other)
		}
		seen[ports[who]] = who
	}
}
