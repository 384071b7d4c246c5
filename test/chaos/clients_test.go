package chaos_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/changecast/changecast/internal/testkit"
)

// clientReport is what test/node/chaos.mjs reports of one client.
type clientReport struct {
	I      int                  `json:"i"`
	Tenant string               `json:"tenant"`
	State  string               `json:"state"`
	Drops  int                  `json:"drops"`
	Docs   map[string][2]string `json:"docs"` // "collection/id" → [version, digest]
	Stats  map[string]int       `json:"stats"`
	Client map[string]int       `json:"client"`
	Errors []string             `json:"errors"`
}

// nodeClients runs test/node/chaos.mjs: n clients of @changecast/client.
type nodeClients struct {
	t     *testing.T
	n     int
	mu    sync.Mutex // serializes commands that wait for an answer
	stdin io.WriteCloser
	dumps chan string // dump and doc answers
	ev    chan string // started, failed
	drops struct {
		sync.Mutex
		failed []string
	}
}

type clientsConfig struct {
	base, hubURL string
	n            int
	tenants      []string
	join         time.Duration
	logPath      string
}

func startClients(t *testing.T, c clientsConfig) *nodeClients {
	t.Helper()
	node := testkit.NeedNode(t, "test/node", "@microsoft/signalr")
	testkit.NeedNode(t, "clients/js", "fast-json-patch")
	cmd := exec.Command(node, "chaos.mjs")
	cmd.Dir = filepath.Join(testkit.Root(t), "test", "node")
	cmd.Env = append(os.Environ(), "CHANGECAST_NEGOTIATE_URL="+c.base, "CHANGECAST_HUB="+hubName,
		"CHANGECAST_HUB_URL="+c.hubURL, "CHANGECAST_HUB_KEY="+hubKey,
		"CHANGECAST_APP_SECRET="+appSecret, "CHANGECAST_APP_ISSUER="+appIssuer, "CHANGECAST_APP_AUDIENCE="+appAudience,
		fmt.Sprintf("CLIENTS=%d", c.n), "TENANTS="+strings.Join(c.tenants, ","), fmt.Sprintf("JOIN_MS=%d", c.join.Milliseconds()))
	logf, err := os.Create(c.logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	nc := &nodeClients{t: t, n: c.n, stdin: stdin, dumps: make(chan string, 1), ev: make(chan string, c.n*2)}
	// Every line is read, whoever waits for it, so the driver never
	// blocks on its stdout.
	done := testkit.Go(t, func() error {
		defer close(nc.dumps)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 256<<20)
		for sc.Scan() {
			l := sc.Text()
			switch {
			case strings.HasPrefix(l, "started "), strings.HasPrefix(l, "failed "):
				select {
				case nc.ev <- l:
				default:
				}
			case strings.HasPrefix(l, "dropped "):
				if f := strings.Fields(l); len(f) < 3 || f[2] != "204" {
					nc.drops.Lock()
					nc.drops.failed = append(nc.drops.failed, l)
					nc.drops.Unlock()
				}
			case strings.HasPrefix(l, "["), strings.HasPrefix(l, "doc "):
				nc.dumps <- l
			default:
				fmt.Fprintln(logf, l)
			}
		}
		err := cmd.Wait()
		logf.Close()
		return err
	})
	t.Cleanup(func() {
		io.WriteString(stdin, "stop\n")
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return nc
}

// waitStarted waits until every client reported it is live.
func (nc *nodeClients) waitStarted(timeout time.Duration) {
	nc.t.Helper()
	deadline := time.After(timeout)
	for started := 0; started < nc.n; {
		select {
		case l := <-nc.ev:
			if strings.HasPrefix(l, "failed ") {
				nc.t.Fatalf("a client failed to start: %s", l)
			}
			started++
		case <-deadline:
			nc.t.Fatalf("%d of %d clients started within %v", started, nc.n, timeout)
		}
	}
}

// drop closes client i's connections at the hub and keeps it away for d.
func (nc *nodeClients) drop(i int, d time.Duration) {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	fmt.Fprintf(nc.stdin, "drop %d %d\n", i, d.Milliseconds())
}

func (nc *nodeClients) failedDrops() []string {
	nc.drops.Lock()
	defer nc.drops.Unlock()
	return nc.drops.failed
}

func (nc *nodeClients) ask(cmd string) string {
	nc.t.Helper()
	nc.mu.Lock()
	defer nc.mu.Unlock()
	if _, err := io.WriteString(nc.stdin, cmd+"\n"); err != nil {
		nc.t.Fatal(err)
	}
	select {
	case l, ok := <-nc.dumps:
		if !ok {
			nc.t.Fatal("the node clients exited")
		}
		return l
	case <-time.After(60 * time.Second):
		nc.t.Fatalf("no answer to %q from the node clients", cmd)
		return ""
	}
}

func (nc *nodeClients) dump() []clientReport {
	nc.t.Helper()
	var out []clientReport
	if err := json.Unmarshal([]byte(nc.ask("dump")), &out); err != nil {
		nc.t.Fatal(err)
	}
	return out
}

// doc is client i's document key, as JSON.
func (nc *nodeClients) doc(i int, key string) string {
	return strings.TrimPrefix(nc.ask(fmt.Sprintf("doc %d %s", i, key)), "doc ")
}

// row is a source document as a client should hold it.
type row struct {
	digest string
	canon  string
}

// rowsOf reads documents (key → JSON) into rows per group, as
// group(doc) names it.
func rowsOf(t *testing.T, docs map[string][]byte, group func(map[string]any) string) map[string]map[string]row {
	out := map[string]map[string]row{}
	for k, b := range docs {
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		m, _ := v.(map[string]any)
		g := group(m)
		if g == "" {
			continue
		}
		if out[g] == nil {
			out[g] = map[string]row{}
		}
		c := canon(v)
		out[g][k] = row{digest: digest(c), canon: c}
	}
	return out
}

// canon is a decoded JSON value's canonical text as test/node/chaos.mjs
// writes it: keys sorted, numbers as JavaScript prints them (so does
// encoding/json for float64), strings as JSON.stringify escapes them.
func canon(v any) string {
	var b strings.Builder
	canonTo(&b, v)
	return b.String()
}

func canonTo(b *strings.Builder, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case float64:
		n, _ := json.Marshal(x)
		b.Write(n)
	case string:
		jsString(b, x)
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			canonTo(b, e)
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			jsString(b, k)
			b.WriteByte(':')
			canonTo(b, x[k])
		}
		b.WriteByte('}')
	default:
		panic(fmt.Sprintf("canon: %T", v))
	}
}

// jsString writes s as JSON.stringify does.
func jsString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case utf8.RuneError:
			b.WriteString(`\ufffd`)
		default:
			if r < 0x20 {
				fmt.Fprintf(b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}

func digest(canon string) string {
	h := sha256.Sum256([]byte(canon))
	return hex.EncodeToString(h[:8])
}

// clientLoss is one client's comparison with the source.
type clientLoss struct {
	missing, wrong, extra int
	problems              []string
}

func (l clientLoss) lost() int { return l.missing + l.wrong + l.extra }

// compare checks each client's replica against the rows of its groups
// (tenant → key → row): lost counts the rows it lacks or holds with other
// content, plus the rows it holds that are not its groups'.
func compare(reports []clientReport, rows map[string]map[string]row) []clientLoss {
	out := make([]clientLoss, len(reports))
	for n, r := range reports {
		l := &out[n]
		want := rows[r.Tenant]
		for k, w := range want {
			g, ok := r.Docs[k]
			switch {
			case !ok:
				l.missing++
				l.problems = append(l.problems, fmt.Sprintf("client %d (%s): %s missing", r.I, r.Tenant, k))
			case g[1] != w.digest:
				l.wrong++
				l.problems = append(l.problems, fmt.Sprintf("client %d (%s): %s at v%s differs", r.I, r.Tenant, k, g[0]))
			}
		}
		for k, g := range r.Docs {
			if _, ok := want[k]; !ok {
				l.extra++
				l.problems = append(l.problems, fmt.Sprintf("client %d (%s): %s extra (v%s)", r.I, r.Tenant, k, g[0]))
			}
		}
		sort.Strings(l.problems)
	}
	return out
}

// problems lists the first differences of losses, or "".
func problems(reports []clientReport, losses []clientLoss) string {
	var all []string
	for n, l := range losses {
		all = append(all, l.problems...)
		if reports[n].State != "live" {
			all = append(all, fmt.Sprintf("client %d (%s): state %s, errors %v", reports[n].I, reports[n].Tenant, reports[n].State, reports[n].Errors))
		}
	}
	if len(all) > 10 {
		all = append(all[:10], fmt.Sprintf("... and %d more", len(all)-10))
	}
	return strings.Join(all, "\n")
}

// totals are the counters the run prints.
// exercised fails the test when a run of d did not do what it is for:
// catch-ups from the history, and (long enough to hold 30 s drops)
// resyncs of clients that outlasted it.
func (tot totals) exercised(t *testing.T, d time.Duration) {
	t.Helper()
	if tot.catchUps == 0 {
		t.Error("no client caught up from the history after a drop: the run did not exercise /changes")
	}
	if d >= 45*time.Second && tot.resyncs == 0 {
		t.Error("no client resynced: the long drops did not outlast the history")
	}
}

// historyLosses is, per client, how many times the plan makes it lose
// the history of its streams: the drops longer than the history keeps
// (maxAge 15 s). Worker kills, the PostgreSQL restart and the split lose
// none: the history lives in Redis and outlives them.
func historyLosses(plan []event, keeps time.Duration) map[int]int {
	out := map[int]int{}
	for _, e := range plan {
		if e.kind == evDrop && e.away > keeps {
			out[e.client]++
		}
	}
	return out
}

// repairs lists the clients that repaired more than the plan explains: a
// change lost on the way and made good by a reload or a refetch leaves
// the end state exact, so lost = 0 alone would not see it. Each client
// may reload once per planned history loss, and refetch nothing, since
// both sources send every change as data (PostgreSQL with REPLICA
// IDENTITY FULL, Cosmos DB whole documents).
func repairs(reports []clientReport, plan []event, keeps time.Duration) []string {
	planned := historyLosses(plan, keeps)
	var out []string
	for _, r := range reports {
		if got, max := r.Client["reloads"], planned[r.I]; got > max {
			out = append(out, fmt.Sprintf("client %d reloaded its snapshot %d times; the plan lost its history %d times: a reload repaired something else", r.I, got, max))
		}
		if r.Stats["refetches"] != 0 {
			out = append(out, fmt.Sprintf("client %d refetched %d documents: every change should arrive as data (refetches 0)", r.I, r.Stats["refetches"]))
		}
	}
	return out
}

// checkRepairs fails the test for each of repairs.
func checkRepairs(t *testing.T, reports []clientReport, plan []event, keeps time.Duration) {
	t.Helper()
	for _, p := range repairs(reports, plan, keeps) {
		t.Error(p)
	}
}

type totals struct {
	messages, changes, duplicates, ignored, gapsFilled, catchUps, resyncs, reloads, snapshots, snapshotDocs, refetches, drops, lost int
}

// summarize prints one line per client and the totals.
func summarize(t *testing.T, reports []clientReport, losses []clientLoss) totals {
	var tot totals
	var b strings.Builder
	for n, r := range reports {
		l := losses[n].lost()
		fmt.Fprintf(&b, "chaos: client %2d %-4s drops %2d  messages %5d  duplicates ignored %4d (+%5d changes by version)  gaps filled %3d  catch-ups %3d  resyncs %2d  snapshots %2d (%d reloads, %5d docs)  refetches %3d  lost %d  %s\n",
			r.I, r.Tenant, r.Drops, r.Stats["envelopes"], r.Client["duplicates"], r.Stats["ignored"], r.Client["gapsFilled"],
			r.Client["catchUps"], r.Client["resyncs"], r.Client["snapshots"], r.Client["reloads"], r.Client["snapshotDocs"], r.Stats["refetches"], l, r.State)
		tot.messages += r.Stats["envelopes"]
		tot.changes += r.Stats["changes"]
		tot.duplicates += r.Client["duplicates"]
		tot.ignored += r.Stats["ignored"]
		tot.gapsFilled += r.Client["gapsFilled"]
		tot.catchUps += r.Client["catchUps"]
		tot.resyncs += r.Client["resyncs"]
		tot.reloads += r.Client["reloads"]
		tot.snapshots += r.Client["snapshots"]
		tot.snapshotDocs += r.Client["snapshotDocs"]
		tot.refetches += r.Stats["refetches"]
		tot.drops += r.Drops
		tot.lost += l
	}
	fmt.Fprintf(&b, "chaos: %d clients, %d drops: messages %d (%d changes), duplicates ignored %d (+%d changes ignored by version), gaps filled %d, catch-ups %d, resyncs %d, snapshots %d (%d reloads, %d docs), refetches %d, lost = %d",
		len(reports), tot.drops, tot.messages, tot.changes, tot.duplicates, tot.ignored, tot.gapsFilled, tot.catchUps, tot.resyncs,
		tot.snapshots, tot.reloads, tot.snapshotDocs, tot.refetches, tot.lost)
	t.Log("\n" + b.String())
	return tot
}

// converge waits until every replica equals the rows of its groups (rows
// reads them), then prints the summary and checks what the run must have
// exercised. On time-out the summary is printed with the differences.
func converge(t *testing.T, nc *nodeClients, timeout time.Duration, rows func() map[string]map[string]row) (totals, []clientReport) {
	t.Helper()
	var (
		reports []clientReport
		losses  []clientLoss
		want    map[string]map[string]row
		msg     string
	)
	start := time.Now()
	deadline := start.Add(timeout)
	testkit.Eventually(t, timeout+time.Minute, "every replica to equal the rows of its groups", func() string {
		want = rows()
		reports = nc.dump()
		losses = compare(reports, want)
		msg = problems(reports, losses)
		if msg == "" || time.Now().After(deadline) {
			return ""
		}
		return msg
	})
	if msg == "" {
		t.Logf("every replica equals the rows of its groups %s after the chaos", secs(time.Since(start)))
	}
	tot := summarize(t, reports, losses)
	if msg != "" {
		// Show one difference in full.
	show:
		for n, l := range losses {
			for _, p := range l.problems {
				if strings.Contains(p, "differs") {
					key := strings.Fields(p)[3]
					t.Logf("client %d's %s:\n got  %s\n want %s", reports[n].I, key, trunc(nc.doc(reports[n].I, key)), trunc(want[reports[n].Tenant][key].canon))
					break show
				}
			}
		}
		t.Fatalf("after %v the replicas still differ (lost = %d):\n%s", timeout, tot.lost, msg)
	}
	return tot, reports
}

func trunc(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}
