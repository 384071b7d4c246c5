package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/changefeed/postgres"
	"github.com/changecast/changecast/internal/replica"
	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/publish"
	"github.com/changecast/changecast/schema/wire"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildOnce.path != "" {
		os.RemoveAll(filepath.Dir(buildOnce.path))
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// capture is a publisher that keeps every batch and applies it to a
// replica, as a client would.
type capture struct {
	mu      sync.Mutex
	batches []wire.Envelope
	rep     *replica.Replica
	fail    func(b *publish.Batch) error // optional fault injection
}

func newCapture() *capture { return &capture{rep: replica.New()} }

func (c *capture) Publish(ctx context.Context, b *publish.Batch) error {
	if c.fail != nil {
		if err := c.fail(b); err != nil {
			return err
		}
	}
	// Decode the payload, not b.Envelope: the payload is what clients get.
	var env wire.Envelope
	if err := json.Unmarshal(b.Payload, &env); err != nil {
		return publish.Permanent(err)
	}
	if err := c.rep.Apply(&env); err != nil {
		panic(err)
	}
	c.mu.Lock()
	c.batches = append(c.batches, env)
	c.mu.Unlock()
	return nil
}

func (c *capture) changes() []wire.Entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []wire.Entry
	for _, b := range c.batches {
		out = append(out, b.Changes...)
	}
	return out
}

func (c *capture) envelopes() []wire.Envelope {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]wire.Envelope(nil), c.batches...)
}

// pipeline runs a source and processor in-process.
type pipeline struct {
	src  *postgres.Source
	cap  *capture
	stop func()
	done chan error
}

type pipeOpts struct {
	tables    []string
	mappings  []publish.Mapping
	slot      string
	heartbeat time.Duration
	batch     publish.BatchLimits
	cap       *capture
}

func startPipeline(t testing.TB, dbURL string, o pipeOpts) *pipeline {
	t.Helper()
	if o.slot == "" {
		o.slot = "changecast"
	}
	if o.cap == nil {
		o.cap = newCapture()
	}
	if o.batch.MaxChanges == 0 {
		o.batch = publish.BatchLimits{MaxChanges: 100, MaxBytes: 512 << 10, MaxDelay: 5 * time.Millisecond}
	}
	for i := range o.mappings {
		if o.mappings[i].Method == "" {
			o.mappings[i].Method = "changes"
		}
	}
	log := testLogger(t)
	cfg := postgres.Config{URL: dbURL, Slot: o.slot, Publication: "changecast", Tables: o.tables}
	cfg.Heartbeat = o.heartbeat
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = -1
	}
	cfg.StatusInterval = 500 * time.Millisecond
	cfg.Logger = log
	src := postgres.New(cfg)
	m, err := publish.NewMapper(o.mappings, publish.MapperOptions{ShadowSize: 1 << 20, MaxChangeBytes: o.batch.MaxBytes - 4096, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	proc := changefeed.NewProcessor(changefeed.ProcessorConfig{Logger: log}, src,
		publish.NewPipeline(publish.PipelineConfig{Source: "test", Batch: o.batch, Parallelism: 4, Logger: log}, m, o.cap))
	ctx, cancel := context.WithCancel(context.Background())
	p := &pipeline{src: src, cap: o.cap, stop: cancel, done: make(chan error, 1)}
	go func() { p.done <- proc.Run(ctx) }()
	t.Cleanup(func() { p.close(t) })
	testkit.Until(t, 20*time.Second, "the source to stream", func() bool {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("pipeline stopped before streaming: %v", err)
		default:
		}
		return src.Ready()
	})
	return p
}

func (p *pipeline) close(t testing.TB) {
	if p.stop == nil {
		return
	}
	p.stop()
	p.stop = nil
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("pipeline: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("pipeline did not stop within 30s")
	}
}

// testLogger logs warnings and errors to the test's log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// diffReplica compares the replica with the database: every row present
// once, in the audience its routing field names, with equal content; no
// extra documents. Dirty ids (refetched by a client) are taken from the
// database, as a client would. It returns a description of the first
// differences, or "".
func diffReplica(t testing.TB, rep *replica.Replica, want map[string][]byte, audience func(doc map[string]any) string, collections ...string) string {
	t.Helper()
	got, dirty := rep.Snapshot()
	var problems []string
	for k, w := range want {
		wd := testkit.NormJSON(t, w)
		ds := got[k]
		if dirty[k] {
			continue
		}
		if len(ds) != 1 {
			var auds []string
			for _, d := range ds {
				auds = append(auds, d.Audience)
			}
			problems = append(problems, fmt.Sprintf("%s: in %d audiences %v, want 1", k, len(ds), auds))
			continue
		}
		if a := audience(wd.(map[string]any)); ds[0].Audience != a {
			problems = append(problems, fmt.Sprintf("%s: in %s, want %s", k, ds[0].Audience, a))
		}
		if gd := testkit.NormJSON(t, ds[0].Doc); !reflect.DeepEqual(gd, wd) {
			problems = append(problems, fmt.Sprintf("%s v%s:\n  got  %s\n  want %s", k, ds[0].V, trunc(ds[0].Doc), trunc(w)))
		}
	}
	for k, ds := range got {
		if _, ok := want[k]; ok {
			continue
		}
		for _, c := range collections {
			if strings.HasPrefix(k, c+"/") {
				problems = append(problems, fmt.Sprintf("%s: replica has it (in %s), database does not", k, ds[0].Audience))
			}
		}
	}
	sort.Strings(problems)
	if len(problems) > 5 {
		problems = append(problems[:5], fmt.Sprintf("... and %d more", len(problems)-5))
	}
	return strings.Join(problems, "\n")
}

func trunc(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + fmt.Sprintf("...(%d bytes)", len(b))
	}
	return string(b)
}

// buildBinary builds the changecast command once per test binary.
var buildOnce struct {
	sync.Once
	path string
	err  error
}

func changecastBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "changecast-bin")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "changecast")
		cmd := exec.Command("go", "build", "-o", buildOnce.path, "./cmd/changecast")
		cmd.Dir = testkit.Root(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildOnce.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.path
}
