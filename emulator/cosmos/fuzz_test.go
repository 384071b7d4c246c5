package cosmos

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzParseFeedTime: If-Modified-Since is outside bytes. Whatever it
// accepts must be a date that formats back to the same instant in both
// zone spellings it accepts.
func FuzzParseFeedTime(f *testing.F) {
	for _, s := range []string{"Mon, 07 Dec 2026 16:09:26 GMT", "Mon, 07 Dec 2026 16:09:26 UTC", "yesterday", "", " UTC", "Monday, 07-Dec-26 16:09:26 GMT"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := parseFeedTime(s)
		if err != nil {
			return
		}
		if tm.Location() != time.UTC {
			t.Fatalf("%q parsed to a non-UTC time %v", s, tm)
		}
		gmt := tm.Format(http.TimeFormat)
		for _, v := range []string{gmt, strings.TrimSuffix(gmt, "GMT") + "UTC"} {
			back, err := parseFeedTime(v)
			if err != nil || !back.Equal(tm.Truncate(time.Second)) {
				t.Fatalf("%q -> %v; %q -> %v, %v", s, tm, v, back, err)
			}
		}
	})
}

// FuzzAnalyzeQuery: the query text is outside bytes; the gateway's
// pre-check must not panic, and a query it says is pinned to a partition
// key must really hold an equality on that path.
func FuzzAnalyzeQuery(f *testing.F) {
	for _, s := range []string{"SELECT * FROM c WHERE c.pk = 'a' ORDER BY c.v", "SELECT * FROM c WHERE ((c.pk = @p) AND c.v > 1)",
		"SELECT DISTINCT c.x FROM root r WHERE r['pk'] = -1", "SELECT VALUE COUNT(1) FROM c WHERE (c.a = 1 OR c.pk = 2)", "((", "))"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		sc, err := analyzeQuery(q, map[string]any{"@p": "x"})
		if err != nil {
			return
		}
		for path := range sc.pins {
			if !strings.Contains(q, "=") || path == "" {
				t.Fatalf("%q pins %q without an equality", q, path)
			}
		}
	})
}

// FuzzDecodeBatch: a batch body is outside bytes; whatever is accepted
// holds 1 to 100 known operations.
func FuzzDecodeBatch(f *testing.F) {
	for _, s := range []string{`[{"operationType":"Create","resourceBody":{"id":"a"}}]`, `[]`, `{}`, `[{"operationType":"Nope"}]`,
		`[{"operationType":"Patch","id":"a","resourceBody":{"operations":[{"op":"incr","path":"/v","value":1}]}}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ops, rep := decodeBatch(b)
		if rep != nil {
			if rep.status < 400 {
				t.Fatalf("error reply with status %d", rep.status)
			}
			return
		}
		if len(ops) == 0 || len(ops) > maxBatchOperations {
			t.Fatalf("accepted %d operations", len(ops))
		}
		for _, op := range ops {
			if _, ok := batchKinds[strings.ToLower(op.OperationType)]; !ok {
				t.Fatalf("accepted operation type %q", op.OperationType)
			}
		}
	})
}

// FuzzClassify: the request path is outside bytes. A route never has an
// empty database, container or document name, and an unaddressable route
// is always a document route.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{"/dbs/a/colls/b/docs/c", "/dbs/a/colls/b/docs/a%2Fb", "/dbs/a/colls/b/docs/x/y/z", "/offers/AbCd", "//", "/dbs/%zz"} {
		f.Add("GET", s)
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		r := classify(method, path, http.Header{})
		if r.unaddressable && r.doc == "" {
			t.Fatalf("%s %q: unaddressable without a document id: %+v", method, path, r)
		}
		if r.kind != KindUnknown && r.kind != KindAccount && r.kind != KindOffer && r.db == "" && r.shape > 1 {
			t.Fatalf("%s %q: %s route without a database: %+v", method, path, r.kind, r)
		}
	})
}

// FuzzThroughputFromHeaders: throughput headers are outside bytes; what is
// accepted is either nothing or within the service's limits.
func FuzzThroughputFromHeaders(f *testing.F) {
	f.Add("400", "")
	f.Add("", `{"maxThroughput":4000,"autoUpgradePolicy":{"throughputPolicy":{"incrementPercent":10}}}`)
	f.Add("abc", "{")
	f.Fuzz(func(t *testing.T, manual, auto string) {
		h := http.Header{}
		if manual != "" {
			h.Set(hdrOfferThroughput, manual)
		}
		if auto != "" {
			h.Set(hdrOfferAutoscale, auto)
		}
		tp, err := throughputFromHeaders(h)
		if err != nil || tp.none() {
			return
		}
		if tp.manual != 0 && tp.autoMax != 0 {
			t.Fatalf("both manual and autoscale accepted: %+v", tp)
		}
		if tp.manual != 0 && (tp.manual < minManualRU || tp.manual%100 != 0) || tp.autoMax != 0 && (tp.autoMax < minAutoscaleRU || tp.autoMax%1000 != 0) {
			t.Fatalf("out of limits: %+v", tp)
		}
	})
}
