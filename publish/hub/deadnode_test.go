package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	"github.com/changecast/changecast/internal/testkit"
)

// The README: a node that dies loses only its own connections, whose keys
// expire after nodeTTL. A `changecast hub` process holding a connection of
// user ann is killed with SIGKILL (it cannot clean up); another node, on
// the same Redis, still sees the connection and the user right after, and
// no longer within nodeTTL (plus a margin); no key of the connection is
// left in Redis.
func TestBackplaneDeadNodeExpires(t *testing.T) {
	t.Parallel()
	redisURL := testkit.Redis(t)
	prefix := testkit.RedisPrefix(t, redisURL)
	const nodeTTL = 3 * time.Second
	changecast := buildChangecast(t)
	cfgPath := filepath.Join(t.TempDir(), "hub.yaml")
	if err := writeFile(cfgPath, fmt.Sprintf(`hubs: [orders]
negotiate:
  auth: {jwt: {hs256Secret: %q, issuer: test-issuer, audience: test-app}}
backplane:
  redis: {url: %q, prefix: %q, nodeTTL: %s}
`, testSecret, redisURL, prefix, nodeTTL)); err != nil {
		t.Fatal(err)
	}
	key := NewAccessKey()
	addr := testkit.FreeAddr(t)
	dead := exec.Command(changecast, "hub", "-hub-config", cfgPath, "-listen", addr)
	dead.Env = append(os.Environ(), "CHANGECAST_HUB_ACCESS_KEY="+key)
	logs := &testkit.Buffer{}
	dead.Stdout, dead.Stderr = logs, logs
	if err := dead.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dead.Process.Kill()
		dead.Wait()
		if t.Failed() {
			t.Logf("--- the killed node:\n%s", logs)
		}
	})
	testkit.Until(t, 20*time.Second, "the node to print its negotiate line", func() bool { return strings.Contains(logs.String(), "negotiate: POST ") })

	cfg := jwtCfg()
	cfg.AccessKey = key
	cfg.Backplane = &Backplane{RedisURL: redisURL, Prefix: prefix, NodeTTL: nodeTTL}
	other := startHub(t, cfg)

	// A WebSocket connection of ann on the node that will die.
	code, _, body := do(t, "POST", "http://"+addr+"/api/negotiate?hub=orders&negotiateVersion=1", appToken(t, jwt.MapClaims{"sub": "ann"}), nil, nil)
	if code != 200 {
		t.Fatalf("negotiate on the node: %d %s", code, body)
	}
	var n negotiated
	if err := json.Unmarshal(body, &n); err != nil {
		t.Fatal(err)
	}
	c := dial(t, n, clientNegotiate(t, n))

	ctx := t.Context()
	exists := func() (conn, user bool) {
		t.Helper()
		conn, err := other.rest.ConnectionExists(ctx, "orders", c.id)
		if err != nil {
			t.Fatal(err)
		}
		user, err = other.rest.UserExists(ctx, "orders", "ann")
		if err != nil {
			t.Fatal(err)
		}
		return conn, user
	}
	testkit.Until(t, 5*time.Second, "the other node to see ann's connection", func() bool {
		conn, user := exists()
		return conn && user
	})

	if err := dead.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	dead.Wait()
	killed := time.Now()
	// Still known: nothing but the TTL removes a dead node's keys.
	if conn, user := exists(); (!conn || !user) && time.Since(killed) < nodeTTL/3 {
		t.Fatalf("right after the kill the other node sees connection %v, user %v; want both until nodeTTL", conn, user)
	}
	testkit.Until(t, nodeTTL+2*time.Second, "the dead node's connection to expire", func() bool {
		conn, user := exists()
		return !conn && !user
	})
	t.Logf("gone %v after the kill (nodeTTL %v)", time.Since(killed).Round(100*time.Millisecond), nodeTTL)

	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(opt)
	defer rc.Close()
	var left []string
	iter := rc.Scan(context.Background(), 0, prefix+":*", 100).Iterator()
	for iter.Next(context.Background()) {
		if k := iter.Val(); strings.Contains(k, c.id) || strings.Contains(k, "ann") {
			left = append(left, k)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("keys of the dead node's connection left in Redis: %v", left)
	}
}

// buildChangecast builds cmd/changecast into the test's temporary folder,
// for tests that run hub nodes as processes (SIGKILL is real).
func buildChangecast(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin, "./cmd/changecast")
	build.Dir = testkit.Root(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return filepath.Join(bin, "changecast")
}
