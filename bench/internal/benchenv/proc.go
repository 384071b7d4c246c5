package benchenv

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Binary is the path of a program of this repository: $CHANGECAST_BENCH_BIN/name
// when scripts/bench.sh built it there, otherwise built now (once per run)
// from pkg, e.g. "github.com/changecast/changecast/bench/loadclient".
func Binary(name, pkg string) string {
	if dir := os.Getenv("CHANGECAST_BENCH_BIN"); dir != "" {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	binMu.Lock()
	defer binMu.Unlock()
	if p, ok := built[name]; ok {
		return p
	}
	if binDir == "" {
		d, err := os.MkdirTemp("", "changecast-bench-bin")
		if err != nil {
			log.Fatal(err)
		}
		binDir = d
	}
	p := filepath.Join(binDir, name)
	cmd := exec.Command("go", "build", "-o", p, pkg)
	cmd.Dir = moduleRoot()
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		log.Fatalf("go build %s: %v", pkg, err)
	}
	built[name] = p
	return p
}

// moduleRoot is the directory of changecast's go.mod, above the working
// directory (bench/fanout is a module of its own inside it).
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		log.Fatal(err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.HasPrefix(string(b), "module github.com/changecast/changecast\n") {
			return d
		}
		if filepath.Dir(d) == d {
			log.Fatalf("changecast's go.mod not found above %s", dir)
		}
	}
}

var (
	binMu  sync.Mutex
	binDir string
	built  = map[string]string{}
)

// Cores: on a machine with at least two, the server under test runs on
// ServerCore and the load (clients and publisher) on LoadCore, so both
// servers compared get one whole core each and the load never competes
// with them.
const (
	ServerCore = 0
	LoadCore   = 1
)

// Pinned reports whether there are cores to pin to.
func Pinned() bool {
	if os.Getenv("CHANGECAST_BENCH_PINNED") != "" {
		return true // PinSelf ran: this process now sees only its core
	}
	return runtime.NumCPU() >= 2 && os.Getenv("CHANGECAST_BENCH_NOPIN") == ""
}

// PinSelf runs this program on the load core: it executes itself again
// under taskset (once), so the Go runtime starts seeing one CPU, as the
// pinned servers do (pinning a running process would leave GOMAXPROCS at 2
// on one core, and the OS would time-slice the two).
func PinSelf() {
	if !Pinned() || os.Getenv("CHANGECAST_BENCH_PINNED") != "" {
		return
	}
	ts, err := exec.LookPath("taskset")
	if err != nil {
		log.Printf("not pinned to core %d: %v", LoadCore, err)
		return
	}
	self, err := os.Executable()
	if err != nil {
		log.Printf("not pinned to core %d: %v", LoadCore, err)
		return
	}
	args := append([]string{ts, "-c", fmt.Sprint(LoadCore), self}, os.Args[1:]...)
	err = syscall.Exec(ts, args, append(os.Environ(), "CHANGECAST_BENCH_PINNED=1"))
	log.Printf("not pinned to core %d: %v", LoadCore, err)
}

// Command returns cmd pinned to core (when pinning) with taskset.
func Command(core int, name string, args ...string) *exec.Cmd {
	if Pinned() {
		if ts, err := exec.LookPath("taskset"); err == nil {
			return exec.Command(ts, append([]string{"-c", fmt.Sprint(core), name}, args...)...)
		}
	}
	return exec.Command(name, args...)
}

// FreePort is a free loopback port.
func FreePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// WaitTCP waits until addr accepts connections.
func WaitTCP(addr string, within time.Duration) {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			log.Fatalf("%s did not start listening in %v: %v", addr, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Load is a running loadclient process (bench/loadclient).
type Load struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// LoadConfig is what the load clients connect to.
type LoadConfig struct {
	Proto   string // signalr or centrifugo
	URL     string
	Key     string
	Clients int
	Groups  int  // centrifugo channels; 0: one channel "all"
	First   int  // index of the first client (user u{First}), for several processes on one server
	Sources int  // source addresses 127.0.0.1…127.0.0.{Sources}; 0: 1
	Idle    bool // centrifugo: connect only, no subscription
}

// StartLoad starts the clients in their own process on the load core and
// waits until all are connected.
func StartLoad(c LoadConfig) *Load {
	bin := Binary("loadclient", "github.com/changecast/changecast/bench/loadclient")
	cmd := Command(LoadCore, bin, "-proto", c.Proto, "-url", c.URL, "-key", c.Key,
		"-clients", fmt.Sprint(c.Clients), "-groups", fmt.Sprint(c.Groups),
		"-first", fmt.Sprint(c.First), "-sources", fmt.Sprint(max(c.Sources, 1)), fmt.Sprintf("-idle=%v", c.Idle))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		log.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		log.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	l := &Load{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	l.out.Buffer(make([]byte, 64<<10), 1<<20)
	line := l.line()
	var ok, failed int
	if _, err := fmt.Sscanf(line, "ready %d %d", &ok, &failed); err != nil || failed > 0 {
		log.Fatalf("loadclient: %q (want all %d clients ready)", line, c.Clients)
	}
	return l
}

func (l *Load) line() string {
	if !l.out.Scan() {
		log.Fatalf("loadclient exited: %v", l.out.Err())
	}
	return strings.TrimSpace(l.out.Text())
}

// Reset zeroes the clients' counters.
func (l *Load) Reset() {
	fmt.Fprintln(l.in, "reset")
	if s := l.line(); s != "ok" {
		log.Fatalf("loadclient reset: %q", s)
	}
}

// Report is the clients' counters: deliveries (changes received, summed
// over clients), first and last delivery (unix ns), latency percentiles.
type Report struct {
	Deliveries   int64 `json:"deliveries"`
	First        int64 `json:"first"`
	Last         int64 `json:"last"`
	P50          int64 `json:"p50_us"`
	P90          int64 `json:"p90_us"`
	P99          int64 `json:"p99_us"`
	P999         int64 `json:"p999_us"`
	Max          int64 `json:"max_us"`
	DecodeErrors int64 `json:"decode_errors"`
	Failed       int64 `json:"failed_clients"`
}

// Ms renders microseconds as milliseconds.
func Ms(us int64) string { return fmt.Sprintf("%.2f ms", float64(us)/1000) }

// Report asks for the counters.
func (l *Load) Report() Report {
	fmt.Fprintln(l.in, "report")
	var r Report
	if err := json.Unmarshal([]byte(l.line()), &r); err != nil {
		log.Fatalf("loadclient report: %v", err)
	}
	return r
}

// WaitFor polls until want deliveries arrived or within passes (the report
// says how many did).
func (l *Load) WaitFor(want int64, within time.Duration) Report {
	deadline := time.Now().Add(within)
	for {
		r := l.Report()
		if r.Deliveries >= want || time.Now().After(deadline) {
			if r.Deliveries < want {
				log.Printf("only %d of %d deliveries arrived within %v", r.Deliveries, want, within)
			}
			return r
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop closes the clients and waits for the process.
func (l *Load) Stop() {
	fmt.Fprintln(l.in, "quit")
	l.in.Close()
	done := make(chan struct{})
	go func() { l.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		l.cmd.Process.Kill()
		<-done
	}
}

// CPU is the CPU time (user and system) process pid has used so far.
func CPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command (which may hold spaces) start after ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// Pid is the load process's id.
func (l *Load) Pid() int { return l.cmd.Process.Pid }

// LoadAvg is the machine's 1-minute load average, to say how busy it was.
func LoadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

// RSS is process pid's resident set (VmRSS of /proc/PID/status) in bytes;
// 0 when it cannot be read.
func RSS(pid int) int64 { return procStatus(pid, "VmRSS:") }

// PeakRSS is process pid's highest resident set so far (VmHWM) in bytes;
// 0 when it cannot be read.
func PeakRSS(pid int) int64 { return procStatus(pid, "VmHWM:") }

func procStatus(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			var kb int64
			fmt.Sscan(rest, &kb)
			return kb << 10
		}
	}
	return 0
}

// HubProcess runs `changecast hub` (the binary, pinned to the server core)
// serving hub orders on a free loopback port with access key key; stop
// interrupts it and waits.
func HubProcess(key string) (addr string, pid int, stop func()) {
	bin := Binary("changecast", "github.com/changecast/changecast/cmd/changecast")
	addr = fmt.Sprintf("127.0.0.1:%d", FreePort())
	cmd := Command(ServerCore, bin, "hub", "-listen", addr, "-hub", "orders")
	cmd.Env = append(os.Environ(), "CHANGECAST_HUB_ACCESS_KEY="+key)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	WaitTCP(addr, 30*time.Second)
	return addr, cmd.Process.Pid, func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }
}
