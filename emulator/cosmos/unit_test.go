package cosmos

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	hq := http.Header{}
	hq.Set("x-ms-documentdb-isquery", "True")
	hcf := http.Header{}
	hcf.Set("A-IM", "Incremental Feed")
	hup := http.Header{}
	hup.Set("x-ms-documentdb-is-upsert", "true")
	cases := []struct {
		method, path string
		h            http.Header
		kind         Kind
		resType      string
		resLink      string
	}{
		{"GET", "/", nil, KindAccount, "", ""},
		{"POST", "/dbs", nil, KindDatabase, "dbs", ""},
		{"GET", "/dbs/db1", nil, KindDatabase, "dbs", "dbs/db1"},
		{"POST", "/dbs/db1/colls", nil, KindContainer, "colls", "dbs/db1"},
		{"GET", "/dbs/db1/colls/c1", nil, KindContainer, "colls", "dbs/db1/colls/c1"},
		{"GET", "/dbs/db1/colls/c1/pkranges", nil, KindPKRanges, "pkranges", "dbs/db1/colls/c1"},
		{"GET", "/dbs/db1/colls/c1/docs", hcf, KindChangeFeed, "docs", "dbs/db1/colls/c1"},
		{"GET", "/dbs/db1/colls/c1/docs", nil, KindReadFeed, "docs", "dbs/db1/colls/c1"},
		{"POST", "/dbs/db1/colls/c1/docs", hq, KindQuery, "docs", "dbs/db1/colls/c1"},
		{"POST", "/dbs/db1/colls/c1/docs", hup, KindUpsert, "docs", "dbs/db1/colls/c1"},
		{"POST", "/dbs/db1/colls/c1/docs", nil, KindCreate, "docs", "dbs/db1/colls/c1"},
		{"PUT", "/dbs/db1/colls/c1/docs/a%20b", nil, KindReplace, "docs", "dbs/db1/colls/c1/docs/a b"},
		{"DELETE", "/dbs/db1/colls/c1/docs/x", nil, KindDelete, "docs", "dbs/db1/colls/c1/docs/x"},
		{"GET", "/offers", nil, KindOffer, "offers", ""},
		{"PUT", "/offers/AbCd", nil, KindOffer, "offers", "AbCd"},
	}
	for _, c := range cases {
		h := c.h
		if h == nil {
			h = http.Header{}
		}
		rt := classify(c.method, c.path, h)
		if rt.kind != c.kind || rt.resType != c.resType || rt.resLink != c.resLink {
			t.Errorf("%s %s: got %+v", c.method, c.path, rt)
		}
	}
}

func TestMasterKeyAuth(t *testing.T) {
	key := []byte("secret-key-bytes")
	now := time.Date(2026, 11, 26, 16, 0, 0, 0, time.UTC)
	date := now.Format(http.TimeFormat)
	rt := classify("GET", "/dbs/db1/colls/c1/pkranges", http.Header{})
	sign := func(k []byte) http.Header {
		h := http.Header{}
		h.Set("x-ms-date", date)
		// The URL-encoded form key clients send.
		h.Set("Authorization", "type%3Dmaster%26ver%3D1.0%26sig%3D"+
			urlEscape(masterSignature(k, "GET", "pkranges", "dbs/db1/colls/c1", date)))
		return h
	}
	if err := authRequest(key, false, now, "GET", rt, sign(key)); err != nil {
		t.Fatalf("valid signature refused: %v", err)
	}
	if err := authRequest(key, false, now, "GET", rt, sign([]byte("other"))); err == nil {
		t.Fatal("wrong key accepted")
	}
	if err := authRequest(key, false, now.Add(20*time.Minute), "GET", rt, sign(key)); err == nil {
		t.Fatal("stale x-ms-date accepted")
	}
	aad := http.Header{}
	aad.Set("x-ms-date", date)
	aad.Set("Authorization", "type=aad&ver=1.0&sig=eyJhbGciOi")
	if authRequest(key, false, now, "GET", rt, aad) == nil || authRequest(key, true, now, "GET", rt, aad) != nil {
		t.Fatal("AAD must be refused by default and accepted with WithAllowAAD")
	}
}

func urlEscape(s string) string {
	r := ""
	for _, c := range s {
		switch c {
		case '+':
			r += "%2B"
		case '/':
			r += "%2F"
		case '=':
			r += "%3D"
		default:
			r += string(c)
		}
	}
	return r
}

func TestEPKRangeMath(t *testing.T) {
	b := initialBoundaries(4)
	if !slices.Equal(b, []string{"", "10000000000000000000000000000000", "20000000000000000000000000000000",
		"30000000000000000000000000000000", "FF"}) {
		t.Fatalf("boundaries: %v", b)
	}
	mid, err := splitPoint("30000000000000000000000000000000", "FF")
	if err != nil || mid != "38000000000000000000000000000000" {
		t.Fatalf("split of the last range: %q %v", mid, err)
	}
	if mid, _ := splitPoint("", "FF"); mid != "20000000000000000000000000000000" {
		t.Fatalf("split of the whole space: %q", mid)
	}
	if compareEPK("", "00") != 0 || compareEPK("05", "0500") != 0 || compareEPK("3F", "FF") >= 0 {
		t.Fatal("compareEPK padding rules")
	}
	epk, _ := effectivePartitionKey([]any{"asdf"})
	if epk != "208BF1D598F5B63AD5520F04FE58C5E8" { // 0x60 & 0x3F = 0x20
		t.Fatalf("routing EPK must clear the top two bits: %s", epk)
	}
	if !epkInRange(epk, "20000000000000000000000000000000", "30000000000000000000000000000000") {
		t.Fatal("epkInRange")
	}
}

func TestQuerySubset(t *testing.T) {
	docs := []map[string]any{
		{"id": "proc..1", "owner": "a", "n": 1.0, "tags": []any{"x"}},
		{"id": "proc..2", "owner": "b", "n": 2.0},
		{"id": "other", "owner": nil, "n": 3.0, "nested": map[string]any{"k": "v"}},
	}
	rows := make([]queryRow, len(docs))
	for i, d := range docs {
		j, _ := json.Marshal(d)
		rows[i] = queryRow{value: d, json: j}
	}
	cases := []struct {
		q      string
		params map[string]any
		want   []string
	}{
		{"SELECT * FROM c WHERE STARTSWITH(c.id, @p)", map[string]any{"@p": "proc.."}, []string{"proc..1", "proc..2"}},
		{"SELECT VALUE c.id FROM c WHERE c.n > 1 AND NOT IS_NULL(c.owner)", nil, []string{"proc..2"}},
		{"SELECT VALUE c.id FROM c WHERE c.owner = null OR ARRAY_CONTAINS(c.tags, 'x')", nil, []string{"proc..1", "other"}},
		{"select value r.id from root r where r.nested.k = 'v'", nil, []string{"other"}},
		{"SELECT VALUE c.id FROM c WHERE c.owner IN ('a', 'b') ORDER BY c.n DESC", nil, []string{"proc..2", "proc..1"}},
		{"SELECT TOP 1 VALUE c.id FROM c ORDER BY c.id", nil, []string{"other"}},
		{"SELECT VALUE c.id FROM c WHERE c.missing = 1", nil, nil},
		{"SELECT VALUE c.id FROM c WHERE c[\"owner\"] != 'a'", nil, []string{"proc..2"}},
		{"SELECT VALUE c.id FROM c OFFSET 1 LIMIT 1", nil, []string{"proc..2"}},
	}
	for _, c := range cases {
		q, err := parseQuery(c.q)
		if err != nil {
			t.Fatalf("%s: %v", c.q, err)
		}
		out, err := q.run(rows, c.params)
		if err != nil {
			t.Fatalf("%s: %v", c.q, err)
		}
		var got []string
		for _, raw := range out {
			var v any
			_ = json.Unmarshal(raw, &v)
			if m, ok := v.(map[string]any); ok {
				v = m["id"]
			}
			got = append(got, v.(string))
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: got %v want %v", c.q, got, c.want)
		}
	}
	q, _ := parseQuery("SELECT c.id, c.owner AS who FROM c WHERE c.id = 'proc..2'")
	out, _ := q.run(rows, nil)
	if len(out) != 1 || string(out[0]) != `{"id":"proc..2","who":"b"}` {
		t.Errorf("projection: %s", out)
	}
	for _, bad := range []string{"DELETE FROM c", "SELECT * FROM c WHERE", "SELECT * FROM c WHERE FOO(c.id)"} {
		if _, err := parseQuery(bad); err == nil {
			t.Errorf("%q should not parse", bad)
		}
	}
}

func TestPatch(t *testing.T) {
	doc := map[string]any{"id": "x", "n": 1.0, "arr": []any{"a"}, "o": map[string]any{"k": 1.0}}
	out, rep := applyPatch(doc, []byte(`{"operations":[{"op":"incr","path":"/n","value":2},{"op":"add","path":"/arr/-","value":"b"},{"op":"remove","path":"/o/k"},{"op":"set","path":"/new","value":true}]}`))
	if rep != nil {
		t.Fatal(rep.message)
	}
	b, _ := json.Marshal(out)
	if string(b) != `{"arr":["a","b"],"id":"x","n":3,"new":true,"o":{}}` {
		t.Fatalf("patched: %s", b)
	}
	if doc["n"] != 1.0 {
		t.Fatal("patch must not modify the stored value in place")
	}
	if _, rep := applyPatch(doc, []byte(`{"condition":"FROM c WHERE c.n = 5","operations":[{"op":"set","path":"/n","value":0}]}`)); rep == nil || rep.status != http.StatusPreconditionFailed {
		t.Fatal("a false condition must give 412")
	}
}

func TestParseObjectKeepsOrderAndDropsSystemProps(t *testing.T) {
	ms, v, err := parseObject([]byte(`{"z":1,"_etag":"old","a":{"b":2},"_ts":5,"id":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(encodeObject(ms)); got != `{"z":1,"a":{"b":2},"id":"x"}` {
		t.Fatalf("members: %s", got)
	}
	if v["id"] != "x" {
		t.Fatal(v)
	}
	if _, _, err := parseObject([]byte(`[1]`)); err == nil {
		t.Fatal("arrays are not documents")
	}
}

func TestSelectValueAliasKeepsDocument(t *testing.T) {
	q, err := parseQuery("SELECT VALUE r FROM root r")
	if err != nil || !q.star {
		t.Fatalf("SELECT VALUE alias should be served as SELECT *: %+v %v", q, err)
	}
}
