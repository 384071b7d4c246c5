// Package chaos_test is issue 10's chaos proof: real changecast processes
// streaming to real Node clients (@changecast/client) while the chaos
// schedule kills the active worker with SIGKILL, restarts PostgreSQL and
// drops client connections (some for 30 s, longer than the history
// keeps). At the end every client's replica must equal the rows of its
// groups exactly: lost = 0; and nothing may have been repaired on the way
// beyond what the schedule explains: no refetch, and no more reloads than
// the client's drops longer than the history keeps.
//
// TestChaosPostgres: a writer at a steady rate on PostgreSQL (inserts,
// updates of plain, NULL and TOASTed columns, routing moves, key changes,
// deletes), two `changecast run` workers sharing the PostgreSQL lease with
// the history in Redis, a stand-alone `changecast hub` playing Azure
// SignalR Service, a balancer (in this process) in front of the workers'
// negotiate, snapshot and changes endpoints that routes to the worker whose
// /readyz answers 200, and 20 clients (test/node/chaos.mjs).
//
// TestChaosCosmos: the same against the Cosmos DB emulator with three
// workers sharing the Cosmos lease container and a split mid-run.
//
// Settings (environment):
//
//	CHAOS_SECONDS  how long the writer and the chaos run (default 60)
//	CHAOS_SEED     the seed of the writer and the schedule (default random;
//	               the test prints it)
//	CHAOS_RATE     writer transactions a second (default 40; some hold several
//	               statements)
//	CHAOS_LOGS     a folder to keep the processes' logs in (default: a
//	               temporary one; a failing run prints their last lines)
//
// TestChaosPostgres restarts a cluster of its own (scripts/pg.sh), since
// restarting the shared one of `make test` would break other tests.
//
// `make chaos` (scripts/chaos.sh) runs both, side by side, for 4 minutes;
// `make test` runs them with the defaults. Needs Node.js and the npm
// packages of test/node and clients/js, Redis (CHANGECAST_REDIS_URL),
// PostgreSQL binaries and, for the Cosmos run's shadow store, the test
// cluster (CHANGECAST_PG_URL); go test -short skips them.
package chaos_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/changecast/changecast/internal/testkit"
)

var binDir string

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) {
		if binDir != "" {
			os.RemoveAll(binDir)
		}
	}))
}

var build struct {
	sync.Once
	path string
	err  error
}

// changecastBinary builds cmd/changecast once per test binary: the workers
// and the hub run as real processes, so SIGKILL is real.
func changecastBinary(t testing.TB) string {
	t.Helper()
	build.Do(func() {
		dir, err := os.MkdirTemp("", "changecast-chaos-bin")
		if err != nil {
			build.err = err
			return
		}
		binDir = dir
		build.path = filepath.Join(dir, "changecast")
		cmd := exec.Command("go", "build", "-o", build.path, "./cmd/changecast")
		cmd.Dir = testkit.Root(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

// settings are a run's knobs, from the environment.
type settings struct {
	duration time.Duration
	seed     uint64
	rate     int // statements a second
}

func loadSettings(t *testing.T) settings {
	t.Helper()
	s := settings{duration: 60 * time.Second, seed: uint64(time.Now().UnixNano()), rate: 40}
	if v := os.Getenv("CHAOS_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 10 {
			t.Fatalf("CHAOS_SECONDS=%q: want a whole number of seconds, at least 10", v)
		}
		s.duration = time.Duration(n) * time.Second
	}
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED=%q: want an unsigned integer", v)
		}
		s.seed = n
	}
	if v := os.Getenv("CHAOS_RATE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			t.Fatalf("CHAOS_RATE=%q: want statements a second, 1 to 1000", v)
		}
		s.rate = n
	}
	t.Logf("chaos: %v, %d writes/s, seed %d (CHAOS_SEED=%d repeats the writer and the schedule)",
		s.duration, s.rate, s.seed, s.seed)
	return s
}
