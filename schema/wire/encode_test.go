package wire

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
)

func TestAppendValueMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	strs := []string{"", "plain", "quote\"back\\slash", "<tag>&amp;", "\x00\x1f\n\r\t", "é ü 日本", "\u2028\u2029", "bad\xffutf8", "\xed\xa0\x80"}
	var gen func(depth int) any
	gen = func(depth int) any {
		switch k := rng.IntN(9); {
		case k == 0:
			return nil
		case k == 1:
			return rng.IntN(2) == 0
		case k == 2:
			return strs[rng.IntN(len(strs))]
		case k == 3:
			return json.Number("12345678901234567890.5")
		case k == 4:
			return int64(rng.Uint64())
		case k == 5:
			return []float64{0, 1.5, -2e-7, 1e21, 123456789, 0.1}[rng.IntN(6)]
		case k == 6 && depth < 4:
			m := map[string]any{}
			for i := 0; i < rng.IntN(5); i++ {
				m[strs[rng.IntN(len(strs))]+string(rune('a'+i))] = gen(depth + 1)
			}
			return m
		case k == 7 && depth < 4:
			var s []any
			for i := 0; i < rng.IntN(4); i++ {
				s = append(s, gen(depth+1))
			}
			return s
		}
		return "leaf"
	}
	for i := 0; i < 2000; i++ {
		v := gen(0)
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := AppendValue(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("value %#v\n got  %s\n want %s", v, got, want)
		}
	}
	for _, s := range strs {
		c := Entry{Op: "patch", Collection: s, ID: s, V: "1.2", PV: "1.1", Patch: json.RawMessage(`[{"op":"add","path":"/a","value":1}]`),
			Doc: json.RawMessage(`{"a":1}`), TS: "2026-11-26T00:00:00Z", Reason: s}
		want, _ := json.Marshal(c)
		if got := c.AppendJSON(nil); string(got) != string(want) {
			t.Fatalf("change\n got  %s\n want %s", got, want)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"9", "10", -1}, {"10", "9", 1}, {"18446744073709551615.2", "18446744073709551615.10", -1},
		{"5.1", "5.1", 0}, {"5", "5.1", -1}, {"007", "7", 0}, {"100.1", "99.9", 1},
	}
	for _, c := range cases {
		if got := CompareVersions(c.a, c.b); got != c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

// TestJSONSize: an entry whose strings need no escaping fits the buffer
// JSONSize sizes, every field present or not.
func TestJSONSize(t *testing.T) {
	full := Entry{Op: "refetch", Collection: "public.orders", ID: "17", V: "123.4", PV: "122.1",
		Patch: json.RawMessage(`[{"op":"replace","path":"/a","value":1}]`), Doc: json.RawMessage(`{"a":1}`),
		TS: "2026-12-01T00:00:00.123456Z", Reason: "unchanged_toast"}
	for _, c := range []Entry{full, {Op: "upsert", Collection: "c", V: "1", Doc: json.RawMessage(`{}`)}, {Op: "truncate", Collection: "c", V: "1"}} {
		if n := len(c.AppendJSON(nil)); n > c.JSONSize() {
			t.Errorf("%+v: %d bytes, JSONSize %d", c, n, c.JSONSize())
		}
	}
}
