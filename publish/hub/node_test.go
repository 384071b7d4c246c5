package hub

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

// TestNodeClient runs test/node with the official @microsoft/signalr client
// against this hub: app negotiate with a JWT, tenant isolation, automatic
// reconnect after a Close with allowReconnect, and 40 s of idle kept alive
// by pings. It takes about 45 s, in parallel with the other tests.
func TestNodeClient(t *testing.T) {
	t.Parallel()
	node := testkit.NeedNode(t, "test/node", "@microsoft/signalr")
	dir := filepath.Join(testkit.Root(t), "test", "node")
	const issuer, aud = "changecast-test", "changecast-app"
	h := startHub(t, Config{Hubs: []string{"orders"}, Negotiate: NegotiateConfig{
		Auth:   NegotiateAuth{JWT: &JWTAuth{HS256Secret: testSecret, Issuer: issuer, Audience: aud}},
		Groups: []string{"tenant-{claims.tid}"},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "hub.test.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"CHANGECAST_HUB_URL="+h.Endpoint(),
		"CHANGECAST_HUB_KEY="+h.AccessKey(),
		"CHANGECAST_NEGOTIATE_URL="+strings.TrimSuffix(h.NegotiateURL(), "/negotiate"),
		"CHANGECAST_APP_SECRET="+testSecret,
		"CHANGECAST_APP_ISSUER="+issuer,
		"CHANGECAST_APP_AUDIENCE="+aud,
	)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test:\n%s", out)
	if err != nil {
		t.Fatalf("node tests failed: %v", err)
	}
}

// TestNodeTransports runs test/node/transports.test.mjs: the official
// client on WebSockets, Server-Sent Events and long polling, with the JSON
// and (where the transport carries binary) MessagePack protocols, gets the
// envelopes byte for byte as structures; and stateful reconnect across TCP
// connections a proxy cuts under load loses and repeats nothing.
func TestNodeTransports(t *testing.T) {
	t.Parallel()
	node := testkit.NeedNode(t, "test/node", "@microsoft/signalr", "@microsoft/signalr-protocol-msgpack")
	h := startHub(t, Config{Hubs: []string{"orders"}, Negotiate: NegotiateConfig{Auth: NegotiateAuth{Anonymous: true}}})
	runNode(t, node, "transports.test.mjs", h, 90*time.Second)
}

// runNode runs one test file of test/node against h.
func runNode(t *testing.T, node, file string, h *testHub, d time.Duration, env ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", file)
	cmd.Dir = filepath.Join(testkit.Root(t), "test", "node")
	cmd.Env = append(append(os.Environ(),
		"CHANGECAST_HUB_URL="+h.Endpoint(),
		"CHANGECAST_HUB_KEY="+h.AccessKey(),
		"CHANGECAST_NEGOTIATE_URL="+strings.TrimSuffix(h.NegotiateURL(), "/negotiate"),
	), env...)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test %s:\n%s", file, out)
	if err != nil {
		t.Fatalf("node tests failed: %v", err)
	}
}
