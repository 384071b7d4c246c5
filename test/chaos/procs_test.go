package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/changecast/changecast/internal/testkit"
)

const (
	hubName     = "orders"
	hubKey      = "chaos-hub-access-key-of-at-least-32-bytes"
	appSecret   = "chaos-app-secret-of-at-least-32-bytes!!"
	appIssuer   = "changecast-chaos"
	appAudience = "changecast-chaos"
)

// proc is a changecast process. Its output goes to a log file, whose tail
// the test prints when it fails.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed once it exited and was reaped
}

func startProc(t *testing.T, name, logPath string, env []string, args ...string) *proc {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "=== %s started %s\n", name, time.Now().Format(time.TimeOnly))
	cmd := exec.Command(changecastBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		f.Close()
		close(p.done)
	}()
	// A test that fails before it stops a process still does not leave
	// it running.
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits until the process is gone.
func (p *proc) kill() {
	if p.alive() {
		p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// terminate asks for a clean stop (SIGTERM) and reports an unclean one.
func (p *proc) terminate(t *testing.T) {
	t.Helper()
	if !p.alive() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not stop within 30s of SIGTERM", p.name)
		p.kill()
	}
}

// logDir is where the run's processes log: under $CHAOS_LOGS when set
// (kept), else a temporary folder. When the test fails it prints the last
// lines of each log.
func logDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if keep := os.Getenv("CHAOS_LOGS"); keep != "" {
		dir = filepath.Join(keep, fmt.Sprintf("%s-%s", t.Name(), time.Now().Format("20060102-150405")))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Logf("logs in %s", dir)
	}
	logTail(t, dir)
	return dir
}

// logTail reports the last lines of the logs in dir when the test failed.
func logTail(t *testing.T, dir string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
			if len(lines) > 40 {
				lines = lines[len(lines)-40:]
			}
			t.Logf("--- last lines of %s:\n%s", filepath.Base(f), strings.Join(lines, "\n"))
		}
	})
}

// startHub runs `changecast hub`, the stand-alone built-in hub playing
// Azure SignalR Service: the workers publish to it over its REST API,
// clients connect to it after negotiating at a worker. It returns the
// endpoint.
func startHub(t *testing.T, dir string) string {
	t.Helper()
	addr := testkit.FreeAddr(t)
	p := startProc(t, "hub", filepath.Join(dir, "hub.log"), []string{"CHANGECAST_HUB_ACCESS_KEY=" + hubKey},
		"hub", "-hub", hubName, "-listen", addr)
	endpoint := "http://" + addr
	probe := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	testkit.Until(t, 30*time.Second, "the hub to serve", func() bool {
		if !p.alive() {
			t.Fatalf("the hub exited; see %s", p.log)
		}
		resp, err := probe.Get(endpoint + "/api/v1/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	t.Cleanup(func() { p.terminate(t) })
	return endpoint
}

// workerSlot is one worker of the run: its addresses stay the same across
// restarts, so the balancer keeps one backend per slot.
type workerSlot struct {
	name   string
	cfg    string // config file
	dir    string
	hub    string // hub.listen: negotiate, /snapshot, /changes
	server string // server.listen: /readyz
	gen    int
	p      *proc
}

// newWorkerSlot picks the slot's addresses.
func newWorkerSlot(t *testing.T, dir, name string) *workerSlot {
	t.Helper()
	return &workerSlot{name: name, dir: dir, cfg: filepath.Join(dir, name+".yaml"), hub: testkit.FreeAddr(t), server: testkit.FreeAddr(t)}
}

// start runs a new process of the slot (a new lease owner each time):
// yaml is the worker's config with {{HUB_LISTEN}}, {{SERVER_LISTEN}} and
// {{OWNER}} in it.
func (w *workerSlot) start(t *testing.T, yaml string) {
	t.Helper()
	w.gen++
	owner := fmt.Sprintf("%s-%d", w.name, w.gen)
	if err := os.WriteFile(w.cfg, []byte(fillSlot(yaml, w.hub, w.server, owner)), 0o644); err != nil {
		t.Fatal(err)
	}
	w.p = startProc(t, owner, filepath.Join(w.dir, w.name+".log"),
		[]string{"CHANGECAST_HUB_ACCESS_KEY=" + hubKey, "CHANGECAST_LOG=text", "CHANGECAST_LOG_LEVEL=info"},
		"run", "-c", w.cfg)
}

func fillSlot(yaml, hubListen, serverListen, owner string) string {
	return strings.NewReplacer("{{HUB_LISTEN}}", hubListen, "{{SERVER_LISTEN}}", serverListen, "{{OWNER}}", owner).Replace(yaml)
}

func (w *workerSlot) alive() bool { return w.p != nil && w.p.alive() }

// validateConfig runs `changecast config validate` on a worker config.
func validateConfig(t *testing.T, dir, yaml string) {
	t.Helper()
	path := filepath.Join(dir, "validate.yaml")
	os.WriteFile(path, []byte(fillSlot(yaml, "127.0.0.1:1", "127.0.0.1:2", "validate")), 0o644)
	cmd := exec.Command(changecastBinary(t), "config", "validate", "-c", path)
	cmd.Env = append(os.Environ(), "CHANGECAST_HUB_ACCESS_KEY="+hubKey)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("config validate: %v\n%s", err, out)
	}
}

// balancer is what a load balancer with readiness checks does in front of
// the workers: it routes {path}/* to a worker whose /readyz answers 200
// (PostgreSQL: the one streaming the slot, the only one that can read
// snapshots), and answers 503 while none is ready.
type balancer struct {
	URL      string // the app negotiate base clients use: http://addr/api
	backends []*backend
	tr       *http.Transport
	probe    *http.Client

	mu   sync.Mutex
	next int // round robin among the ready ones
	cur  *backend
	// sticky keeps sending to the current backend while it is ready
	// (PostgreSQL); otherwise requests go round robin (Cosmos DB).
	sticky bool
}

type backend struct {
	slot  *workerSlot
	proxy *httputil.ReverseProxy
	ready bool
}

func startBalancer(t *testing.T, slots []*workerSlot, sticky bool) *balancer {
	t.Helper()
	b := &balancer{tr: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 10 * time.Second}, sticky: sticky,
		probe: &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{IdleConnTimeout: 5 * time.Second}}}
	for _, s := range slots {
		target, _ := url.Parse("http://" + s.hub)
		rp := &httputil.ReverseProxy{
			Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.SetXForwarded() },
			Transport: b.tr,
			// The backend went away mid-request: what an LB answers.
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				w.Header().Set("Retry-After", "1")
				http.Error(w, "no ready worker: "+err.Error(), http.StatusServiceUnavailable)
			},
		}
		b.backends = append(b.backends, &backend{slot: s, proxy: rp})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.URL = "http://" + ln.Addr().String() + "/api"
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second}
	testkit.Run(t, func(ctx context.Context) error {
		go func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
		}()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	testkit.Run(t, b.check)
	t.Cleanup(func() {
		b.tr.CloseIdleConnections()
		b.probe.CloseIdleConnections()
	})
	return b
}

// check probes every backend's /readyz every 100 ms.
func (b *balancer) check(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ready := make([]bool, len(b.backends))
		for i, be := range b.backends {
			ready[i] = b.probeReady(ctx, be.slot.server)
		}
		b.mu.Lock()
		for i, be := range b.backends {
			be.ready = ready[i]
		}
		if b.cur != nil && !b.cur.ready {
			b.cur = nil
		}
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (b *balancer) probeReady(ctx context.Context, addr string) bool {
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/readyz", nil)
	resp, err := b.probe.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// pick chooses a ready backend, or nil.
func (b *balancer) pick() *backend {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sticky && b.cur != nil && b.cur.ready {
		return b.cur
	}
	for range b.backends {
		be := b.backends[b.next%len(b.backends)]
		b.next++
		if be.ready {
			b.cur = be
			return be
		}
	}
	return nil
}

// readySlots lists the slots whose worker answered ready at the last check.
func (b *balancer) readySlots() []*workerSlot {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*workerSlot
	for _, be := range b.backends {
		if be.ready {
			out = append(out, be.slot)
		}
	}
	return out
}

func (b *balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	be := b.pick()
	if be == nil {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "no ready worker", http.StatusServiceUnavailable)
		return
	}
	be.proxy.ServeHTTP(w, r)
}
