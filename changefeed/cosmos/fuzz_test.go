package cosmos

import (
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/changecast/changecast/changefeed"
	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/lease"
	"github.com/changecast/changecast/schema/template"
)

// Fuzz targets of the parsers of outside bytes in this package: change
// feed items (each document of a page the service returns), continuation
// tokens (stored in leases, returned by the service, or written by another
// processor), session tokens, start positions (config) and snapshot
// cursors (a caller's). `make test` runs their corpora; `make fuzz`
// searches further.

// FuzzDecodeItem: any change feed item becomes a change of the collection:
// data with a version, or a refetch marker (Err set) that carries no data;
// never a panic, and allocation in proportion to the item.
func FuzzDecodeItem(f *testing.F) {
	for _, s := range []string{
		`{"id":"o1","_lsn":42,"_ts":1700000000,"_rid":"x","_self":"y","_etag":"\"e\"","_attachments":"a","n":1.50}`,
		`{"id":"o2","_lsn":43,"_deleted":true}`, `{"id":7,"_lsn":44}`, `{"id":"o3","n":1}`, `{"_lsn":45}`, `[1,2]`,
		`{"id":"o4","_lsn":46,`, `{"id":{"a":1},"_lsn":"x"}`, `null`, ``, `{"id":"o5","_lsn":1e400,"_ts":-1}`,
		`{"id":"o6","_lsn":47,"_deleted":"yes","_ts":99999999999999999999}`,
	} {
		f.Add([]byte(s))
	}
	del, _ := template.ParsePointer("/_deleted")
	d := decoder{collection: "orders", deleteAt: del}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var ch *changefeed.Change
		testkit.BoundedAlloc(t, len(raw), 64, 64<<10, func() { ch = d.decode(raw) })
		if ch == nil || ch.Collection != "orders" {
			t.Fatalf("no change of the collection: %+v", ch)
		}
		if ch.Err != nil {
			if ch.After != nil || ch.Before != nil {
				t.Fatalf("a refetch marker carries data: %+v", ch)
			}
			return
		}
		if ch.Version == "" || ch.ID == "" {
			t.Fatalf("a change without version or id: %+v", ch)
		}
	})
}

// FuzzContinuation: a stored or returned continuation gives a position for
// a range, or an error; its LSN is non-negative when known; never a panic.
func FuzzContinuation(f *testing.F) {
	full := lease.FeedRange{Min: "", Max: "FF"}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, s := range []string{
		"", `"42"`, rangeToken("rid", full, ptr(`"5"`), nil).String(), rangeToken("rid", full, nil, &at).String(),
		rangeToken("other", full, ptr("*"), nil).String(), `{"version":1,"resourceId":"rid","continuation":[]}`,
		`{"continuation":[{"minInclusive":"7F","maxExclusive":"","continuationToken":"\"x\""}]}`, "{nope",
	} {
		f.Add(s, "7F", "FF")
	}
	f.Fuzz(func(t *testing.T, cont, min, max string) {
		rs, err := resumeFor(cont, lease.FeedRange{Min: min, Max: max}, "rid", Start{Kind: StartNow})
		if err == nil && rs.etag != nil && rs.startFrom != nil {
			t.Fatalf("%q: both an ETag and a start time", cont)
		}
		if n, ok := tokenLSN(cont); ok && n < 0 {
			t.Fatalf("%q: LSN %d", cont, n)
		}
		if n, ok := sessionLSN(cont); ok && n < 0 {
			t.Fatalf("session %q: LSN %d", cont, n)
		}
		if s, err := ParseStart(min); err == nil && s.Kind == StartTime && s.Time.Location() != time.UTC {
			t.Fatalf("start %q not in UTC", min)
		}
	})
}

// FuzzSnapshotCursor: a caller's cursor is ours (of this container, a
// partition in range) or a BadCursor error; never a panic.
func FuzzSnapshotCursor(f *testing.F) {
	for _, s := range []string{`{"r":"rid"}`, `{"r":"rid","k":1,"e":[{"minInclusive":"","maxExclusive":"FF","continuationToken":"\"3\""}],"n":"7F"}`,
		`{"r":"other"}`, `{"r":"rid","k":-1}`, `{"r":"rid","k":99}`, `[`} {
		f.Add(base64.RawURLEncoding.EncodeToString([]byte(s)), uint8(2))
	}
	f.Add("%%%", uint8(0))
	f.Fuzz(func(t *testing.T, s string, partitions uint8) {
		c, err := decodeCursor(s, "rid", int(partitions))
		if err != nil {
			if bad := (*BadCursorError)(nil); !errors.As(err, &bad) {
				t.Fatalf("%q: %v is not a BadCursorError", s, err)
			}
			return
		}
		if c.RID != "rid" || c.K < 0 || c.K >= max(int(partitions), 1) {
			t.Fatalf("%q accepted as %+v", s, c)
		}
	})
}
