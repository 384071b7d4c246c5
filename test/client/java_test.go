package client_test

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/changecast/changecast/internal/testkit"
)

// TestJavaClient: app users on the official SignalR Java client
// (com.microsoft.signalr:signalr, test/java), one JVM for all of them,
// connect through changecast's app negotiate with their JWTs while a writer
// changes rows: on WebSockets and on Long Polling, with the JSON protocol.
// Each keeps a replica of its tenant's group from the snapshot, the live
// `changes` envelopes and the stream offsets. Half of them then lose their
// connection while rows change and reconnect: they must catch up from
// /changes (a catch-up, no snapshot reload). At the end every replica equals
// its tenant's rows in the table, and none needed a refetch.
//
// MessagePack is not covered: the Java client's MessagePack module
// (com.microsoft.signalr.messagepack:signalr-messagepack) is not served by
// the Maven registry these machines reach (README, "Clients and protocols").
func TestJavaClient(t *testing.T) {
	testkit.Postgres(t)
	classpath := buildJava(t)
	dbURL := testkit.Database(t)
	db := testkit.Connect(t, dbURL)
	testkit.CreateWorkloadTables(t, db, false, "public.orders")
	base := startWorker(t, dbURL, "javaclient", "")

	w := testkit.NewWorkload(testkit.Seed(t), "public.orders")
	writeFor(t, w, db, 500*time.Millisecond) // rows before anyone connects: the snapshots are not empty

	type user struct {
		transport, tenant string
		drop              bool
	}
	users := []user{
		{"websockets", "t0", false}, {"longpolling", "t1", false},
		{"websockets", "t2", true}, {"longpolling", "t3", true},
		{"websockets", "t1", true}, {"longpolling", "t0", false},
	}
	jc := startJava(t, classpath, base)
	for i, u := range users {
		jc.send("start %d %s %s %s", i, u.transport, u.tenant, appToken(fmt.Sprintf("java-%d", i), u.tenant))
	}
	writeFor(t, w, db, 2*time.Second) // the users join while rows change
	jc.await("started", len(users), 60*time.Second)
	writeFor(t, w, db, 2*time.Second)

	dropped := 0
	for i, u := range users {
		if u.drop {
			jc.send("drop %d", i)
			dropped++
		}
	}
	jc.await("dropped", dropped, 30*time.Second)
	writeFor(t, w, db, 2*time.Second) // what the dropped users must catch up on
	for i, u := range users {
		if u.drop {
			jc.send("resume %d", i)
		}
	}
	jc.await("resumed", dropped, 60*time.Second)
	writeFor(t, w, db, time.Second)

	var reports []clientReport
	testkit.Eventually(t, 60*time.Second, "every Java replica to equal its tenant's rows", func() string {
		reports = jc.dump()
		return diffClients(t, reports, tenantRows(t, db))
	})
	var patches int
	for _, r := range reports {
		u := users[r.I]
		patches += r.Stats["patches"]
		if r.Stats["refetches"] != 0 || len(r.Errors) != 0 {
			t.Errorf("user %d (%s): %d refetches; errors %v", r.I, u.transport, r.Stats["refetches"], r.Errors)
		}
		if r.Client["envelopes"] == 0 {
			t.Errorf("user %d (%s): no live envelope received", r.I, u.transport)
		}
		// One snapshot each: a reconnect is caught up from the histories.
		if r.Client["snapshots"] != 1 || r.Client["reloads"] != 0 {
			t.Errorf("user %d (%s): %d snapshots, %d reloads; want 1 and 0", r.I, u.transport, r.Client["snapshots"], r.Client["reloads"])
		}
		if want := map[bool]int{true: 1, false: 0}[u.drop]; r.Client["catchUps"] != want {
			t.Errorf("user %d (%s, dropped %v): %d catch-ups from /changes, want %d", r.I, u.transport, u.drop, r.Client["catchUps"], want)
		}
		// What was written while it was away came from /changes when it
		// reconnected, not from a gap noticed later: one worker sends each
		// stream in offset order, so no envelope ever skips one.
		if u.drop && r.Client["caughtUp"] == 0 {
			t.Errorf("user %d (%s): no envelope read from /changes on reconnect", r.I, u.transport)
		}
		if r.Client["gapsFilled"] != 0 {
			t.Errorf("user %d (%s): %d offset gaps filled from /changes; one worker sends in order", r.I, u.transport, r.Client["gapsFilled"])
		}
		t.Logf("user %d (%s, %s, dropped %v): %d docs; replica %v; client %v", r.I, u.transport, u.tenant, u.drop, len(r.Docs), r.Stats, r.Client)
	}
	if patches == 0 {
		t.Error("no patch was applied: the run did not exercise the version rule")
	}
}

// buildJava builds test/java with Maven unless scripts/setup.sh (or an
// earlier run) built it from the current sources, and returns the program's
// class path. It builds offline first (~/.m2 filled by setup.sh), online
// when something is missing. It skips the test when java or mvn is
// missing: scripts/setup.sh installs them (Debian's openjdk-17-jdk-headless
// and maven).
func buildJava(t *testing.T) string {
	t.Helper()
	testkit.Integration(t, "Java 17 and Maven (scripts/setup.sh installs them and fills ~/.m2)")
	for _, tool := range []string{"java", "mvn"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: run scripts/setup.sh (Debian's openjdk-17-jdk-headless and maven)", tool)
		}
	}
	dir := filepath.Join(testkit.Root(t), "test", "java")
	lib := filepath.Join(dir, "target", "lib")
	classpath := filepath.Join(dir, "target", "classes") + string(os.PathListSeparator) + filepath.Join(lib, "*")
	if built, err := os.Stat(lib); err == nil && !newerThan(t, dir, built.ModTime()) {
		return classpath
	}
	start := time.Now()
	pom := filepath.Join(dir, "pom.xml")
	out, err := exec.Command("mvn", "-q", "-B", "-o", "-f", pom, "package").CombinedOutput()
	if err != nil {
		out, err = exec.Command("mvn", "-q", "-B", "-f", pom, "package").CombinedOutput()
	}
	if err != nil {
		t.Fatalf("mvn package in test/java: %v\n%s", err, out)
	}
	now := time.Now()
	if err := os.Chtimes(lib, now, now); err != nil {
		t.Fatal(err)
	}
	t.Logf("test/java built in %v", now.Sub(start).Round(time.Second))
	return classpath
}

// newerThan says whether test/java's pom.xml or a file under its src/
// changed after at.
func newerThan(t *testing.T, dir string, at time.Time) bool {
	t.Helper()
	newer := false
	for _, root := range []string{filepath.Join(dir, "pom.xml"), filepath.Join(dir, "src")} {
		err := filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if info, err := d.Info(); err == nil && info.ModTime().After(at) {
				newer = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return newer
}

// startJava runs the test/java program, driven by lines (Main.java).
func startJava(t *testing.T, classpath, base string) *lineProc {
	t.Helper()
	cmd := exec.Command("java", "-cp", classpath, "changecast.javatest.Main")
	cmd.Env = append(os.Environ(), "CHANGECAST_NEGOTIATE_URL="+base, "CHANGECAST_HUB=orders")
	return startLineProc(t, cmd)
}
