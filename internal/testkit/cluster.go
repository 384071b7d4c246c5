package testkit

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Cluster is a PostgreSQL cluster of one test's own (scripts/pg.sh), for
// tests that restart the server: the shared cluster of make test serves
// other tests meanwhile.
type Cluster struct {
	URL  string // the postgres database, as CHANGECAST_PG_URL
	Dir  string
	pgsh string
}

// PrivateCluster starts a cluster with wal_level=logical, stopped when the
// test ends. Under -short the test is skipped.
func PrivateCluster(t testing.TB) *Cluster {
	t.Helper()
	Integration(t, "PostgreSQL binaries for scripts/pg.sh (a cluster of the test's own, restarted mid-run)")
	c := &Cluster{pgsh: filepath.Join(Root(t), "scripts", "pg.sh")}
	out, err := exec.Command(c.pgsh, "start").Output()
	if err != nil {
		t.Fatalf("pg.sh start: %v", err)
	}
	// pg.sh prints: export CHANGECAST_PG_DIR=… CHANGECAST_PG_PORT=… CHANGECAST_PG_URL='…'
	for _, f := range strings.Fields(strings.TrimPrefix(strings.TrimSpace(string(out)), "export ")) {
		k, v, _ := strings.Cut(f, "=")
		v = strings.Trim(v, "'")
		switch k {
		case "CHANGECAST_PG_URL":
			c.URL = v
		case "CHANGECAST_PG_DIR":
			c.Dir = v
		}
	}
	if c.URL == "" || c.Dir == "" {
		t.Fatalf("pg.sh start printed %q", out)
	}
	t.Cleanup(func() { exec.Command(c.pgsh, "stop", c.Dir).Run() })
	return c
}

// Restart stops the server and starts it again (pg.sh restart).
func (c *Cluster) Restart() error {
	if out, err := exec.Command(c.pgsh, "restart", c.Dir).CombinedOutput(); err != nil {
		return fmt.Errorf("pg.sh restart: %v: %s", err, out)
	}
	return nil
}
