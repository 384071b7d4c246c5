// Package bench_test runs every benchmark program of bench/ with tiny
// parameters, so none of them rots between `make bench` runs. It asserts
// only that each program ran and printed its ratio line, never that a
// target was met: timings on a shared machine would make that flaky.
package bench_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/changecast/changecast/internal/testkit"
)

func TestBenchmarksSmoke(t *testing.T) {
	base := testkit.Postgres(t) // skipped under -short
	root := testkit.Root(t)
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator), "./cmd/changecast", "./bench/...")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	run := func(t *testing.T, dir, name string, args []string, env ...string) {
		t.Helper()
		// A program that hangs fails here, not at the package's timeout.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = dir
		// Tests run beside other packages' tests: no pinning to cores.
		cmd.Env = append(os.Environ(), append(env, "CHANGECAST_BENCH_BIN="+bin, "CHANGECAST_BENCH_NOPIN=1")...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", filepath.Base(name), args, err, out)
		}
		if !strings.Contains(string(out), "ratio ") {
			t.Fatalf("%s printed no ratio line:\n%s", filepath.Base(name), out)
		}
		t.Logf("%s", out)
	}
	for _, tc := range []struct {
		name  string
		args  []string
		pg    bool
		redis bool
	}{
		{"pgthroughput", []string{"-rows", "2000"}, true, false},
		{"restcalls", []string{"-rate", "500", "-seconds", "1"}, true, false},
		{"backlog", []string{"-rows", "5000", "-down", "500ms"}, true, false},
		{"latency", []string{"-clients", "20", "-groups", "4", "-rate", "100", "-seconds", "1"}, true, false},
		{"latprobe", []string{"-rate", "200", "-seconds", "0.5"}, true, false},
		{"cosmosthroughput", []string{"-docs", "300"}, false, false},
		{"snapshot", []string{"-docs", "300", "-rounds", "1"}, true, false},
		{"resume", []string{"-docs", "100", "-changes", "200", "-clients", "5", "-rounds", "1"}, true, false},
		// Centrifugo only when it is built already (make bench builds it).
		{"idle", []string{"-conns", "50", "-runs", "1", "-settle", "500ms", "-per-process", "30", "-centrifugo-build=false"}, false, false},
		{"backplane", []string{"-clients", "30", "-messages", "5", "-latency-clients", "6", "-latency-messages", "20", "-runs", "1"}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var env []string
			if tc.pg {
				env = append(env, "CHANGECAST_PG_URL="+testkit.DatabaseOn(t, base))
			}
			if tc.redis {
				// The program keys its hub nodes under a prefix of its own.
				env = append(env, "CHANGECAST_REDIS_URL="+testkit.Redis(t))
			}
			run(t, root, filepath.Join(bin, tc.name), tc.args, env...)
		})
	}
	t.Run("fanout", func(t *testing.T) {
		// Its own module (bench/fanout/go.mod).
		run(t, filepath.Join(root, "bench", "fanout"), "go", []string{"run", ".", "-clients", "40", "-groups", "4", "-messages", "100", "-rate", "50", "-seconds", "1", "-runs", "2"})
	})
}
