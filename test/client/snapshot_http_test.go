package client_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/changecast/changecast/internal/testkit"
)

// appToken is what the app's login would give a user of tenant tid.
func appToken(sub, tid string) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	body := enc(map[string]string{"alg": "HS256", "typ": "JWT"}) + "." +
		enc(map[string]any{"sub": sub, "tid": tid, "iss": appIssuer, "aud": appAudience, "exp": time.Now().Add(time.Hour).Unix()})
	m := hmac.New(sha256.New, []byte(appSecret))
	m.Write([]byte(body))
	return body + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

type snapshotPage struct {
	Hub    string   `json:"hub"`
	Groups []string `json:"groups"`
	Docs   []struct {
		Collection string          `json:"collection"`
		ID         string          `json:"id"`
		V          string          `json:"v"`
		Group      string          `json:"group"`
		Doc        json.RawMessage `json:"doc"`
		Deleted    bool            `json:"deleted"`
	} `json:"docs"`
	Next string `json:"next"`
}

func getSnapshot(t *testing.T, base, query, token string) (int, snapshotPage, string) {
	t.Helper()
	status, b, _, err := get(base+"/snapshot?"+query, token)
	if err != nil {
		t.Fatalf("snapshot %s: %v", query, err)
	}
	var p snapshotPage
	if status == 200 {
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatalf("snapshot body %s: %v", b, err)
		}
	}
	return status, p, string(b)
}

// TestSnapshotAuthorization: a snapshot shows a caller exactly what its
// token grants, and says nothing about the rest.
func TestSnapshotAuthorization(t *testing.T) {
	dbURL := testkit.Database(t)
	db := testkit.Connect(t, dbURL)
	testkit.Exec(t, db, `CREATE TABLE orders (id int PRIMARY KEY, tenant text NOT NULL, item text, secret text)`)
	testkit.Exec(t, db, `INSERT INTO orders VALUES (1, 'acme', 'a', 's'), (2, 'acme', 'b', 's'), (3, 'globex', 'c', 's')`)
	base := startWorker(t, dbURL, "snapauth", "")
	acme := appToken("u1", "acme")

	code, page, body := getSnapshot(t, base, "hub=orders", acme)
	if code != 200 || len(page.Docs) != 2 || page.Groups[0] != "tenant-acme" || page.Next != "" {
		t.Fatalf("acme's snapshot: %d %s", code, body)
	}
	for _, d := range page.Docs {
		if d.Group != "tenant-acme" || d.V == "" || d.Collection != "public.orders" {
			t.Fatalf("document %+v", d)
		}
	}
	cases := []struct {
		name, query, token string
		status             int
	}{
		{"no token where JWT is required", "hub=orders", "", http.StatusUnauthorized},
		{"a forged token", "hub=orders", acme[:len(acme)-4] + "AAAA", http.StatusUnauthorized},
		{"a group not granted", "hub=orders&group=tenant-globex", acme, http.StatusForbidden},
		{"another tenant's document", "hub=orders&collection=public.orders&id=3", acme, http.StatusNotFound},
		{"a document that does not exist", "hub=orders&collection=public.orders&id=99", acme, http.StatusNotFound},
		{"a hub not served", "hub=payroll", acme, http.StatusNotFound},
		{"a cursor not given by the endpoint", "hub=orders&cursor=bm9wZQ", acme, http.StatusBadRequest},
		// Issue 16: ids and cursor keys are read as the key's types (the
		// index finds the row); one that does not parse is the caller's
		// (a foreign cursor was a 500 with an ERROR log quoting it).
		{"an id that is no integer", "hub=orders&collection=public.orders&id=abc", acme, http.StatusNotFound},
		{"an id out of the key's range", "hub=orders&collection=public.orders&id=99999999999", acme, http.StatusNotFound},
		{"a cursor whose key is no integer", "hub=orders&cursor=" + foreignKeyCursor(`["abc"]`), acme, http.StatusBadRequest},
	}
	for _, c := range cases {
		if code, _, body := getSnapshot(t, base, c.query, c.token); code != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, code, body, c.status)
		}
	}
	code, page, body = getSnapshot(t, base, "hub=orders&collection=public.orders&id=2", acme)
	if code != 200 || len(page.Docs) != 1 || page.Docs[0].ID != "2" || !strings.Contains(string(page.Docs[0].Doc), `"item":"b"`) {
		t.Fatalf("one document: %d %s", code, body)
	}
	code, page, _ = getSnapshot(t, base, "hub=orders&group=tenant-acme&limit=1", acme)
	if code != 200 || len(page.Docs) != 1 || page.Next == "" {
		t.Fatalf("a one-document page has no next: %+v", page)
	}
	code, page2, _ := getSnapshot(t, base, "hub=orders&group=tenant-acme&limit=1&cursor="+page.Next, acme)
	if code != 200 || len(page2.Docs) != 1 || page2.Docs[0].ID == page.Docs[0].ID {
		t.Fatalf("the second page: %+v after %+v", page2, page)
	}
}

// foreignKeyCursor is a snapshot cursor of the endpoint's form (stream 0)
// holding a PostgreSQL cursor whose key is key (a JSON array).
func foreignKeyCursor(key string) string {
	inner := base64.RawURLEncoding.EncodeToString([]byte(`{"k":` + key + `}`))
	return base64.RawURLEncoding.EncodeToString([]byte(`{"s":0,"a":"` + inner + `"}`))
}

// rss is the process's resident set (VmRSS), in bytes.
func rss(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			kb, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return kb << 10
		}
	}
	t.Skip("no VmRSS")
	return 0
}

// TestSnapshotPagesOutInBoundedMemory: a 100k-row group pages out with the
// process (worker and test client alike) growing by less than 64 MB.
func TestSnapshotPagesOutInBoundedMemory(t *testing.T) {
	dbURL := testkit.Database(t)
	db := testkit.Connect(t, dbURL)
	testkit.Exec(t, db, `CREATE TABLE orders (id int PRIMARY KEY, tenant text NOT NULL, item text, qty int)`)
	testkit.Exec(t, db, `INSERT INTO orders SELECT g, 'big', 'item ' || g || ' ' || repeat('x', 100), g % 7 FROM generate_series(1, 100000) g`)
	base := startWorker(t, dbURL, "snapmem", "")
	tok := appToken("u1", "big")
	runtime.GC()
	before := rss(t)
	peak := before
	n, pages := 0, 0
	cursor := ""
	for {
		q := "hub=orders"
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		code, page, body := getSnapshot(t, base, q, tok)
		if code != 200 {
			t.Fatalf("page %d: %d %s", pages, code, body)
		}
		n += len(page.Docs)
		pages++
		peak = max(peak, rss(t))
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	if n != 100000 {
		t.Fatalf("%d documents in %d pages, want 100000", n, pages)
	}
	growth := peak - before
	t.Logf("100000 documents in %d pages; RSS grew by %d MB", pages, growth>>20)
	if growth > 64<<20 {
		t.Fatalf("RSS grew by %d MB paging out the snapshot, want < 64 MB", growth>>20)
	}
}
