package testkit

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Integration skips the test under -short, saying that it needs what (e.g.
// "PostgreSQL with wal_level=logical"). Postgres, NeedNode and NeedChromium
// call it; a test that needs some other service calls it first.
func Integration(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("integration test, skipped under -short: needs %s", what)
	}
}

// Root is the repository's top folder.
func Root(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("testkit: cannot locate the repository")
	}
	root, err := filepath.Abs(filepath.Join(filepath.Dir(file), "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// NeedNode is for tests that run Node.js scripts: it skips the test under
// -short, and otherwise fails it unless node is installed and every npm
// package of modules is installed in dir/node_modules (dir is relative to
// the repository, e.g. "test/node"). It returns node's path.
func NeedNode(t testing.TB, dir string, modules ...string) string {
	t.Helper()
	what := "Node.js"
	if len(modules) > 0 {
		what += " and the npm packages of " + dir
	}
	Integration(t, what+" (scripts/setup.sh installs them)")
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed (Node.js 20 or later); then run scripts/setup.sh")
	}
	for _, m := range modules {
		p := filepath.Join(Root(t), dir, "node_modules", filepath.FromSlash(m), "package.json")
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("npm package %s is missing from %s/node_modules: run scripts/setup.sh (it runs npm ci there)", m, dir)
		}
	}
	return node
}

// Chromium is where scripts/setup.sh installs Debian's chromium.
const Chromium = "/usr/bin/chromium"

// NeedChromium is for tests that drive a headless browser: it skips the
// test under -short and otherwise fails it unless Chromium is installed. It
// returns the browser's path.
func NeedChromium(t testing.TB) string {
	t.Helper()
	Integration(t, "Chromium at "+Chromium+" (scripts/setup.sh installs it)")
	if _, err := os.Stat(Chromium); err != nil {
		t.Fatalf("%s is missing: run scripts/setup.sh (it installs Debian's chromium)", Chromium)
	}
	return Chromium
}
