package browser_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/publish/hub"
)

// TestBrowserTransports runs the official browser client
// (@microsoft/signalr and @microsoft/signalr-protocol-msgpack, their
// browser bundles) in headless Chromium against the built-in hub, on
// WebSockets, Server-Sent Events and long polling with JSON and (except on
// Server-Sent Events) MessagePack: each gets the envelopes sent through the
// REST API as the structures sent.
func TestBrowserTransports(t *testing.T) {
	t.Parallel()
	testkit.NeedChromium(t)
	node := testkit.NeedNode(t, "web", "playwright-core", "@microsoft/signalr", "@microsoft/signalr-protocol-msgpack")
	root := testkit.Root(t)
	// The page and the two bundles (not minified: the test reads the
	// transport class names), served by the hub itself (one origin).
	static := t.TempDir()
	for _, f := range []string{
		"test/browser/transports/index.html",
		"web/node_modules/@microsoft/signalr/dist/browser/signalr.js",
		"web/node_modules/@microsoft/signalr-protocol-msgpack/dist/browser/signalr-protocol-msgpack.js",
	} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(static, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h, err := hub.New(hub.Config{Listen: "127.0.0.1:0", Hubs: []string{"orders"}, Static: static,
		Negotiate: hub.NegotiateConfig{Auth: hub.NegotiateAuth{Anonymous: true}}})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Run(t, h.Run)
	<-h.Listening()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "transports.mjs", h.Endpoint()+"/index.html")
	cmd.Dir = filepath.Join(root, "test", "browser")
	cmd.Env = append(os.Environ(), "CHANGECAST_HUB_URL="+h.Endpoint(), "CHANGECAST_HUB_KEY="+h.AccessKey())
	out, err := cmd.CombinedOutput()
	t.Logf("transports.mjs:\n%s", out)
	if err != nil {
		t.Fatalf("browser transports failed: %v", err)
	}
}
