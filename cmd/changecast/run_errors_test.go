package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/changecast/changecast/internal/testkit"
)

// runFor runs `changecast run` on a PostgreSQL source config and returns
// its exit code, stderr and how long it took; the run is cut after 40 s
// (a clean stop, exit 0), so a source that retries a permanent error
// forever fails the caller's check.
func runFor(t *testing.T, dbURL, table, extra string) (int, string, time.Duration) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf(`
source:
  postgres: {url: %q, slot: s, publication: p, tables: [%s]%s}
mappings: [{collection: %s, hub: h}]
publish: {target: stdout}
`, dbURL, table, extra, table)), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	start := time.Now()
	code := run(ctx, []string{"run", "-c", path}, &out, &errb)
	return code, errb.String(), time.Since(start)
}

func withUser(t *testing.T, dbURL, user, password string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	if password != "" {
		u.User = url.UserPassword(user, password)
	} else {
		u.User = url.User(user)
	}
	return u.String()
}

func withDatabase(t *testing.T, dbURL, db string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + db
	return u.String()
}

// TestRunPermanentErrors: a problem retrying cannot fix stops `changecast
// run` with exit code 2 within 30 seconds, with one line naming the cause
// and the fix: configuration problems (a missing table, a table without a
// usable replica identity or key, wal_level not logical) and permanent
// source errors (a wrong password, a database that does not exist, a role
// without REPLICATION, a role that cannot set the replica identity).
func TestRunPermanentErrors(t *testing.T) {
	dbURL := testkit.Database(t)
	db := testkit.Connect(t, dbURL)
	ctx := context.Background()
	suffix := fmt.Sprintf("%d", rand.IntN(1_000_000))
	norepl, notowner := "norepl_"+suffix, "notowner_"+suffix
	testkit.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	testkit.Exec(t, db, `CREATE TABLE nokey (a int)`)
	testkit.Exec(t, db, `CREATE TABLE ident (id int PRIMARY KEY)`)
	testkit.Exec(t, db, `CREATE PUBLICATION p FOR TABLE t`)
	testkit.Exec(t, db, `ALTER TABLE t REPLICA IDENTITY FULL`)
	testkit.Exec(t, db, fmt.Sprintf(`CREATE ROLE %s LOGIN`, norepl))
	testkit.Exec(t, db, fmt.Sprintf(`CREATE ROLE %s LOGIN REPLICATION`, notowner))
	testkit.Exec(t, db, fmt.Sprintf(`GRANT SELECT ON t, ident TO %s, %s`, norepl, notowner))
	t.Cleanup(func() {
		db.Exec(ctx, fmt.Sprintf(`DROP OWNED BY %s, %s`, norepl, notowner))
		db.Exec(ctx, fmt.Sprintf(`DROP ROLE %s, %s`, norepl, notowner))
	})

	cases := []struct {
		name, url, table, extra string
		want                    []string
	}{
		{"missing table", dbURL, "public.nope", "", []string{"table public.nope does not exist"}},
		{"no usable replica identity", dbURL, "public.nokey", ", replicaIdentity: keep",
			[]string{"public.nokey has no primary key and REPLICA IDENTITY DEFAULT", "ALTER TABLE public.nokey REPLICA IDENTITY FULL"}},
		{"no key", dbURL, "public.nokey", "", []string{"public.nokey has no primary key; set key"}},
		{"missing database", withDatabase(t, dbURL, "nope_"+suffix), "public.t", "", []string{"does not exist", "create the database or correct source.postgres.url"}},
		{"role without REPLICATION", withUser(t, dbURL, norepl, ""), "public.t", "", []string{"may not use logical replication", "ALTER ROLE <user> REPLICATION"}},
		{"role that cannot set the replica identity", withUser(t, dbURL, notowner, ""), "public.ident", "",
			[]string{"table public.ident has REPLICA IDENTITY DEFAULT", "cannot change it", "ALTER TABLE public.ident REPLICA IDENTITY FULL as the table's owner", "replicaIdentity: keep"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, errs, took := runFor(t, c.url, c.table, c.extra)
			checkPermanent(t, code, errs, took, c.want...)
		})
	}

	// A private cluster for what must not touch the shared one: a role
	// with a password (pg_hba), and wal_level=replica (a restart).
	pc := testkit.PrivateCluster(t)
	pdb := testkit.Connect(t, pc.URL)
	testkit.Exec(t, pdb, `CREATE TABLE t (id int PRIMARY KEY)`)
	testkit.Exec(t, pdb, `CREATE ROLE pw LOGIN REPLICATION SUPERUSER PASSWORD 'right'`)
	hba := filepath.Join(pc.Dir, "data", "pg_hba.conf")
	old, err := os.ReadFile(hba)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hba, append([]byte("host all pw 127.0.0.1/32 scram-sha-256\n"), old...), 0o600); err != nil {
		t.Fatal(err)
	}
	testkit.Exec(t, pdb, `SELECT pg_reload_conf()`)
	t.Run("wrong password", func(t *testing.T) {
		code, errs, took := runFor(t, withUser(t, pc.URL, "pw", "wrong"), "public.t", "")
		checkPermanent(t, code, errs, took, "PostgreSQL refused the password", "correct the password in source.postgres.url")
		if strings.Contains(errs, "wrong") {
			t.Errorf("the password is in the output:\n%s", errs)
		}
	})
	testkit.Exec(t, pdb, `ALTER SYSTEM SET wal_level = replica`)
	pdb.Close(ctx)
	if err := pc.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Run("wal_level not logical", func(t *testing.T) {
		code, errs, took := runFor(t, pc.URL, "public.t", "")
		checkPermanent(t, code, errs, took, "wal_level=replica", "ALTER SYSTEM SET wal_level = logical")
	})
}

func checkPermanent(t *testing.T, code int, errs string, took time.Duration, want ...string) {
	t.Helper()
	if code != 2 || took > 30*time.Second {
		t.Fatalf("exit code %d after %v, want 2 within 30s; stderr:\n%s", code, took.Round(time.Millisecond), errs)
	}
	for _, w := range want {
		if !strings.Contains(errs, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errs)
		}
	}
	if n := strings.Count(errs, `"level":"ERROR"`); n != 1 {
		t.Errorf("%d ERROR lines, want one:\n%s", n, errs)
	}
}
