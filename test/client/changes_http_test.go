package client_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/changecast/changecast/internal/testkit"
)

type changesPage struct {
	Epoch     string `json:"epoch"`
	Envelopes []struct {
		Group   string `json:"group"`
		Epoch   string `json:"epoch"`
		Offset  uint64 `json:"offset"`
		Changes []struct {
			Op string `json:"op"`
			ID string `json:"id"`
		} `json:"changes"`
	} `json:"envelopes"`
	More  bool   `json:"more"`
	Error string `json:"error"`
}

func getChanges(t *testing.T, base, query, token string) (int, changesPage, string) {
	t.Helper()
	status, b, length, err := get(base+"/changes?"+query, token)
	if err != nil {
		t.Fatalf("changes %s: %v", query, err)
	}
	if length >= 0 && int64(len(b)) != length {
		t.Fatalf("changes %s: %d bytes, Content-Length %d", query, len(b), length)
	}
	var p changesPage
	if len(b) > 0 {
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatalf("changes %s: %s: %v", query, b, err)
		}
	}
	return status, p, string(b)
}

// TestChangesEndpoint checks GET {negotiate}/changes from outside: what a
// group's stream sent after the snapshot's position, in offset order and
// paged; 410 with the stream's epoch for another epoch or a position the
// stream never reached; the same authorization as snapshots.
func TestChangesEndpoint(t *testing.T) {
	dbURL := testkit.Database(t)
	db := testkit.Connect(t, dbURL)
	testkit.Exec(t, db, `CREATE TABLE orders (id int PRIMARY KEY, tenant text NOT NULL, item text)`)
	testkit.Exec(t, db, `INSERT INTO orders VALUES (1, 'acme', 'a'), (2, 'globex', 'b')`)
	base := startWorker(t, dbURL, "changes", "")
	acme := appToken("u1", "acme")

	var first struct {
		Streams []struct {
			Group  string `json:"group"`
			Epoch  string `json:"epoch"`
			Offset uint64 `json:"offset"`
		} `json:"streams"`
	}
	code, _, body := getSnapshot(t, base, "hub=orders&group=tenant-acme&limit=1", acme)
	if code != 200 || json.Unmarshal([]byte(body), &first) != nil || len(first.Streams) != 1 || first.Streams[0].Group != "tenant-acme" {
		t.Fatalf("snapshot: %d %s", code, body)
	}
	epoch, after := first.Streams[0].Epoch, first.Streams[0].Offset

	// Three transactions of acme, one of globex: acme's stream gets only
	// its own, after the snapshot's position.
	testkit.Exec(t, db, `INSERT INTO orders VALUES (3, 'acme', 'c')`)
	testkit.Exec(t, db, `UPDATE orders SET item = 'b2' WHERE id = 2`)
	testkit.Exec(t, db, `UPDATE orders SET item = 'a2' WHERE id = 1`)
	testkit.Exec(t, db, `DELETE FROM orders WHERE id = 3`)
	q := "hub=orders&group=tenant-acme&epoch=" + url.QueryEscape(epoch) + "&after=" + strconv.FormatUint(after, 10)
	var page changesPage
	testkit.Until(t, 15*time.Second, "acme's three changes in its history", func() bool {
		var n int
		code, page, _ = getChanges(t, base, q, acme)
		for _, e := range page.Envelopes {
			n += len(e.Changes)
		}
		return code == 200 && n == 3
	})
	var ids []string
	for i, e := range page.Envelopes {
		if e.Group != "tenant-acme" || e.Epoch != epoch || e.Offset != after+uint64(i)+1 {
			t.Fatalf("envelope %d: group %q epoch %q offset %d, want tenant-acme, %s, %d", i, e.Group, e.Epoch, e.Offset, epoch, after+uint64(i)+1)
		}
		for _, c := range e.Changes {
			ids = append(ids, c.Op+" "+c.ID)
		}
	}
	if want := []string{"upsert 3", "patch 1", "delete 3"}; len(ids) != 3 || ids[0] != want[0] || ids[2] != want[2] || (ids[1] != want[1] && ids[1] != "upsert 1") {
		t.Fatalf("changes %v, want %v", ids, want)
	}
	if page.Epoch != epoch || page.More {
		t.Fatalf("page epoch %q more %v", page.Epoch, page.More)
	}
	last := page.Envelopes[len(page.Envelopes)-1].Offset

	// Paged: one envelope at a time.
	code, p1, body := getChanges(t, base, q+"&limit=1", acme)
	if code != 200 || len(p1.Envelopes) != 1 || p1.Envelopes[0].Offset != after+1 || p1.More != (len(page.Envelopes) > 1) {
		t.Fatalf("limit=1 (of %d envelopes): %d %s", len(page.Envelopes), code, body)
	}
	// Caught up: nothing more.
	code, p, body := getChanges(t, base, "hub=orders&group=tenant-acme&epoch="+url.QueryEscape(epoch)+"&after="+strconv.FormatUint(last, 10), acme)
	if code != 200 || len(p.Envelopes) != 0 || p.More {
		t.Fatalf("after the last offset: %d %s", code, body)
	}

	for _, c := range []struct {
		name, query, token string
		status             int
	}{
		{"another epoch", "hub=orders&group=tenant-acme&epoch=not-this-one&after=0", acme, http.StatusGone},
		{"beyond the stream", "hub=orders&group=tenant-acme&epoch=" + url.QueryEscape(epoch) + "&after=" + strconv.FormatUint(last+5, 10), acme, http.StatusGone},
		{"no token", q, "", http.StatusUnauthorized},
		{"a group not granted", "hub=orders&group=tenant-globex&epoch=" + url.QueryEscape(epoch) + "&after=0", acme, http.StatusForbidden},
		{"a bad offset", "hub=orders&group=tenant-acme&epoch=e&after=minus-one", acme, http.StatusBadRequest},
	} {
		code, p, body := getChanges(t, base, c.query, c.token)
		if code != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, code, body, c.status)
		}
		if c.status == http.StatusGone && (p.Error != "resync" || p.Epoch != epoch) {
			t.Errorf("%s: %s, want a resync naming epoch %s", c.name, body, epoch)
		}
	}
}
