package postgres

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"
)

// These tests need no server: pgoutput sends every value as text, and
// decode.go turns that text into JSON values with pure functions.

type num = json.Number

func TestDecodeValue(t *testing.T) {
	tm := pgtype.NewMap()
	tests := []struct {
		name  string
		oid   uint32
		text  string
		want  any
		known bool   // false: a type decodeValue does not know
		err   string // a substring of the error, when one is expected
	}{
		// Integers keep PostgreSQL's text as a JSON number.
		{name: "int2", oid: pgtype.Int2OID, text: "-32768", want: num("-32768"), known: true},
		{name: "int4", oid: pgtype.Int4OID, text: "42", want: num("42"), known: true},
		{name: "int8 min", oid: pgtype.Int8OID, text: "-9223372036854775808", want: num("-9223372036854775808"), known: true},
		{name: "xid above int64", oid: pgtype.XIDOID, text: "18446744073709551615", want: num("18446744073709551615"), known: true},
		{name: "oid", oid: pgtype.OIDOID, text: "16384", want: num("16384"), known: true},
		{name: "bad integer", oid: pgtype.Int4OID, text: "4x", known: true, err: `integer "4x"`},

		// Floats: numbers, except what JSON has no number for.
		{name: "float8", oid: pgtype.Float8OID, text: "1.5", want: num("1.5"), known: true},
		{name: "float4 exponent", oid: pgtype.Float4OID, text: "1e+30", want: num("1e+30"), known: true},
		{name: "float NaN", oid: pgtype.Float8OID, text: "NaN", want: "NaN", known: true},
		{name: "float infinity", oid: pgtype.Float8OID, text: "Infinity", want: "Infinity", known: true},
		{name: "float -infinity", oid: pgtype.Float4OID, text: "-Infinity", want: "-Infinity", known: true},

		// numeric: a number when a float64 reader gets the same value.
		{name: "numeric keeps its scale", oid: pgtype.NumericOID, text: "12.50", want: num("12.50"), known: true},
		{name: "numeric beyond float64", oid: pgtype.NumericOID, text: "123456789012345678901234.5678", want: "123456789012345678901234.5678", known: true},
		{name: "numeric 2^53+1", oid: pgtype.NumericOID, text: "9007199254740993", want: "9007199254740993", known: true},
		{name: "numeric 2^53", oid: pgtype.NumericOID, text: "9007199254740992", want: num("9007199254740992"), known: true},
		{name: "numeric NaN", oid: pgtype.NumericOID, text: "NaN", want: "NaN", known: true},

		{name: "bool true", oid: pgtype.BoolOID, text: "t", want: true, known: true},
		{name: "bool false", oid: pgtype.BoolOID, text: "f", want: false, known: true},
		{name: "bad bool", oid: pgtype.BoolOID, text: "yes", known: true, err: `bool "yes"`},

		// Types whose text is their natural JSON form.
		{name: "text", oid: pgtype.TextOID, text: `hé "q"`, want: `hé "q"`, known: true},
		{name: "varchar", oid: pgtype.VarcharOID, text: "v", want: "v", known: true},
		{name: "uuid", oid: pgtype.UUIDOID, text: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", want: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", known: true},
		{name: "date", oid: pgtype.DateOID, text: "2026-11-26", want: "2026-11-26", known: true},
		{name: "interval", oid: pgtype.IntervalOID, text: "1 day 02:00:00", want: "1 day 02:00:00", known: true},
		{name: "money", oid: 790, text: "$1.50", want: "$1.50", known: true},

		// JSON is decoded, numbers kept exactly.
		{name: "json", oid: pgtype.JSONOID, text: `{"a": [1, 2.50], "b": null}`, want: map[string]any{"a": []any{num("1"), num("2.50")}, "b": nil}, known: true},
		{name: "jsonb scalar", oid: pgtype.JSONBOID, text: `"s"`, want: "s", known: true},
		{name: "jsonb null", oid: pgtype.JSONBOID, text: `null`, want: nil, known: true},
		{name: "bad json", oid: pgtype.JSONBOID, text: `{"a":`, known: true, err: "json"},

		// Timestamps in RFC 3339; with a zone, in UTC.
		{name: "timestamptz UTC", oid: pgtype.TimestamptzOID, text: "2026-11-26 16:00:00.123456+00", want: "2026-11-26T16:00:00.123456Z", known: true},
		{name: "timestamptz offset", oid: pgtype.TimestamptzOID, text: "2026-11-26 17:00:00+01", want: "2026-11-26T16:00:00Z", known: true},
		{name: "timestamptz minutes offset", oid: pgtype.TimestamptzOID, text: "2026-11-26 21:30:00+05:30", want: "2026-11-26T16:00:00Z", known: true},
		{name: "timestamptz seconds offset", oid: pgtype.TimestamptzOID, text: "1900-01-01 00:00:00+00:09:21", want: "1899-12-31T23:50:39Z", known: true},
		{name: "timestamptz infinity", oid: pgtype.TimestamptzOID, text: "infinity", want: "infinity", known: true},
		{name: "timestamptz BC", oid: pgtype.TimestamptzOID, text: "0044-03-15 12:00:00+00 BC", want: "0044-03-15 12:00:00+00 BC", known: true},
		{name: "timestamptz not ISO", oid: pgtype.TimestamptzOID, text: "Thu Nov 26 16:00:00 2026 UTC", known: true, err: "ISO DateStyle"},
		{name: "timestamp", oid: pgtype.TimestampOID, text: "2026-11-26 17:00:00", want: "2026-11-26T17:00:00", known: true},
		{name: "timestamp fraction", oid: pgtype.TimestampOID, text: "2026-11-26 17:00:00.5", want: "2026-11-26T17:00:00.5", known: true},
		{name: "timestamp -infinity", oid: pgtype.TimestampOID, text: "-infinity", want: "-infinity", known: true},
		{name: "bad timestamp", oid: pgtype.TimestampOID, text: "yesterday", known: true, err: `timestamp "yesterday"`},

		// bytea as base64, from either output format.
		{name: "bytea hex", oid: pgtype.ByteaOID, text: `\xdeadbeef`, want: "3q2+7w==", known: true},
		{name: "bytea escape", oid: pgtype.ByteaOID, text: `a\\b\001`, want: "YVxiAQ==", known: true},
		{name: "bytea empty", oid: pgtype.ByteaOID, text: `\x`, want: "", known: true},
		{name: "bad bytea hex", oid: pgtype.ByteaOID, text: `\xzz`, known: true, err: "invalid byte"},
		{name: "bad bytea escape", oid: pgtype.ByteaOID, text: `a\9`, known: true, err: "bytea escape"},

		// Arrays: each element follows the rules of its type.
		{name: "int4[] with NULL", oid: pgtype.Int4ArrayOID, text: "{1,NULL,3}", want: []any{num("1"), nil, num("3")}, known: true},
		{name: "text[] quoted", oid: pgtype.TextArrayOID, text: `{"x y",z,"NULL","a\"b"}`, want: []any{"x y", "z", "NULL", `a"b`}, known: true},
		{name: "numeric[]", oid: pgtype.NumericArrayOID, text: "{1.5,123456789012345678901234.5}", want: []any{num("1.5"), "123456789012345678901234.5"}, known: true},
		{name: "bool[]", oid: pgtype.BoolArrayOID, text: "{t,f}", want: []any{true, false}, known: true},
		{name: "jsonb[]", oid: pgtype.JSONBArrayOID, text: `{"{\"a\": 1}"}`, want: []any{map[string]any{"a": num("1")}}, known: true},
		{name: "timestamptz[]", oid: pgtype.TimestamptzArrayOID, text: `{"2026-11-26 17:00:00+01"}`, want: []any{"2026-11-26T16:00:00Z"}, known: true},
		{name: "empty array", oid: pgtype.Int4ArrayOID, text: "{}", want: []any{}, known: true},
		{name: "text[] plain", oid: pgtype.TextArrayOID, text: "{a,NULLs,null,b3}", want: []any{"a", "NULLs", nil, "b3"}, known: true},
		{name: "one element", oid: pgtype.VarcharArrayOID, text: "{only}", want: []any{"only"}, known: true},
		{name: "two dimensions", oid: pgtype.Int4ArrayOID, text: "{{1,2,3},{4,5,6}}", want: []any{[]any{num("1"), num("2"), num("3")}, []any{num("4"), num("5"), num("6")}}, known: true},
		{name: "three dimensions", oid: pgtype.TextArrayOID, text: "{{{a},{b}},{{c},{NULL}}}", want: []any{[]any{[]any{"a"}, []any{"b"}}, []any{[]any{"c"}, []any{nil}}}, known: true},
		{name: "lower bound", oid: pgtype.Int4ArrayOID, text: "[0:1]={5,6}", want: []any{num("5"), num("6")}, known: true},
		{name: "bad element", oid: pgtype.Int4ArrayOID, text: "{1,x}", known: true, err: `integer "x"`},
		{name: "bad array", oid: pgtype.Int4ArrayOID, text: "{1,2", known: true, err: "array"},

		// Anything else is sent as its text form, and flagged as unknown.
		{name: "unknown type", oid: 999999, text: "happy", want: "happy", known: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, known, err := decodeValue(tm, tc.oid, []byte(tc.text))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("decodeValue(%d, %q) = %#v, %v; want an error containing %q", tc.oid, tc.text, got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("decodeValue(%d, %q): %v", tc.oid, tc.text, err)
			}
			if known != tc.known || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("decodeValue(%d, %q) = %#v (%T), known %v; want %#v (%T), known %v", tc.oid, tc.text, got, got, known, tc.want, tc.want, tc.known)
			}
			// Every value must encode as JSON.
			if _, err := json.Marshal(got); err != nil {
				t.Fatalf("%#v does not encode: %v", got, err)
			}
		})
	}
}

func TestCanonicalDecimal(t *testing.T) {
	for in, want := range map[string]string{
		"1.500": "1.5", "1.0": "1", "-0.0": "0", "-0": "0", "007": "7", "0.10": "0.1", ".5": "0.5",
		"-12.340": "-12.34", "100": "100", "0": "0", "-1": "-1",
	} {
		if got := canonicalDecimal(in); got != want {
			t.Errorf("canonicalDecimal(%q) = %q, want %q", in, got, want)
		}
	}
}

// relationOf builds the cached relation decodeTuple and docID work on.
func relationOf(key []int, cols ...*pglogrepl.RelationMessageColumn) *relation {
	return &relation{msg: &pglogrepl.RelationMessage{Namespace: "public", RelationName: "t", Columns: cols, ColumnNum: uint16(len(cols))},
		collection: "public.t", key: key}
}

func column(name string, oid uint32, key bool) *pglogrepl.RelationMessageColumn {
	c := &pglogrepl.RelationMessageColumn{Name: name, DataType: oid, TypeModifier: -1}
	if key {
		c.Flags = 1
	}
	return c
}

func tuple(cols ...tupleCol) []tupleCol { return cols }

func textCol(s string) tupleCol { return tupleCol{kind: 't', text: s} }

var (
	nullCol  = tupleCol{kind: 'n'}
	toastCol = tupleCol{kind: 'u'}
)

func TestDecodeTuple(t *testing.T) {
	tm := pgtype.NewMap()
	rel := relationOf([]int{0},
		column("id", pgtype.Int8OID, true), column("name", pgtype.TextOID, false),
		column("note", pgtype.TextOID, false), column("big", pgtype.TextOID, false), column("mood", 999999, false))

	t.Run("values, NULL and unchanged TOAST", func(t *testing.T) {
		var unknown []string
		r := decodeTuple(tm, rel, tuple(textCol("7"), textCol("ann"), nullCol, toastCol, textCol("happy")), false,
			func(col string, oid uint32) { unknown = append(unknown, col) })
		want := map[string]any{"id": num("7"), "name": "ann", "note": nil, "mood": "happy"}
		if r.err != nil || !reflect.DeepEqual(r.doc, want) {
			t.Fatalf("doc %#v, err %v; want %#v", r.doc, r.err, want)
		}
		// An unchanged TOAST value is not a NULL: it is absent and listed.
		if !reflect.DeepEqual(r.unchanged, []string{"big"}) {
			t.Fatalf("unchanged %v, want [big]", r.unchanged)
		}
		if !reflect.DeepEqual(unknown, []string{"mood"}) {
			t.Fatalf("unknown types reported for %v, want [mood]", unknown)
		}
	})
	t.Run("key only", func(t *testing.T) {
		// A 'K' old tuple has every column, the non-key ones as NULL that
		// are really absent.
		r := decodeTuple(tm, rel, tuple(textCol("7"), nullCol, nullCol, nullCol, nullCol), true, nil)
		if want := map[string]any{"id": num("7")}; !reflect.DeepEqual(r.doc, want) {
			t.Fatalf("doc %#v, want %#v", r.doc, want)
		}
	})
	t.Run("first bad column is the error, the others decode", func(t *testing.T) {
		r := decodeTuple(tm, relationOf(nil, column("a", pgtype.Int4OID, false), column("b", pgtype.BoolOID, false), column("c", pgtype.TextOID, false)),
			tuple(textCol("x"), textCol("maybe"), textCol("ok")), false, nil)
		if r.err == nil || !strings.Contains(r.err.Error(), "column a") {
			t.Fatalf("err %v, want one naming column a", r.err)
		}
		if want := map[string]any{"c": "ok"}; !reflect.DeepEqual(r.doc, want) {
			t.Fatalf("doc %#v, want %#v", r.doc, want)
		}
	})
	t.Run("binary data was not requested", func(t *testing.T) {
		r := decodeTuple(tm, relationOf(nil, column("a", pgtype.Int4OID, false)),
			tuple(tupleCol{kind: 'b', text: "\x00\x00\x00\x01"}), false, nil)
		if r.err == nil || !strings.Contains(r.err.Error(), "binary") {
			t.Fatalf("err %v", r.err)
		}
	})
	t.Run("columns beyond the relation are ignored", func(t *testing.T) {
		r := decodeTuple(tm, relationOf(nil, column("a", pgtype.TextOID, false)), tuple(textCol("x"), textCol("extra")), false, nil)
		if want := map[string]any{"a": "x"}; r.err != nil || !reflect.DeepEqual(r.doc, want) {
			t.Fatalf("doc %#v, err %v", r.doc, r.err)
		}
	})
	t.Run("no tuple", func(t *testing.T) {
		if r := decodeTuple(tm, rel, nil, false, nil); len(r.doc) != 0 || r.err != nil {
			t.Fatalf("doc %#v, err %v", r.doc, r.err)
		}
	})
	t.Run("an old tuple like the new one shares its unchanged values", func(t *testing.T) {
		jrel := relationOf([]int{0}, column("id", pgtype.Int8OID, true), column("name", pgtype.TextOID, false),
			column("attrs", pgtype.JSONBOID, false), column("qty", pgtype.Int4OID, false))
		newTup := tuple(textCol("7"), textCol("bob"), textCol(`{"a":[1,2]}`), toastCol)
		oldTup := tuple(textCol("7"), textCol("ann"), textCol(`{"a":[1,2]}`), textCol("3"))
		after := decodeTuple(tm, jrel, newTup, false, nil)
		before := decodeTupleLike(tm, jrel, oldTup, false, nil, newTup, after.doc)
		alone := decodeTuple(tm, jrel, oldTup, false, nil)
		if before.err != nil || !reflect.DeepEqual(before.doc, alone.doc) {
			t.Fatalf("doc %#v, err %v; want %#v as decoded alone", before.doc, before.err, alone.doc)
		}
		if fmt.Sprintf("%p", before.doc["attrs"]) != fmt.Sprintf("%p", after.doc["attrs"]) {
			t.Fatal("the unchanged jsonb value was decoded again, not shared")
		}
	})
}

func TestDocID(t *testing.T) {
	one := relationOf([]int{1}, column("x", pgtype.TextOID, false), column("id", pgtype.TextOID, true))
	pair := relationOf([]int{1, 0}, column("a", pgtype.TextOID, true), column("b", pgtype.Int4OID, true))
	tests := []struct {
		name string
		rel  *relation
		doc  map[string]any
		want string
		ok   bool
	}{
		{"text key", one, map[string]any{"id": "o-17", "x": 1}, "o-17", true},
		{"number key", one, map[string]any{"id": num("17")}, "17", true},
		{"bool key", one, map[string]any{"id": true}, "true", true},
		// A single key that is no scalar is a one-element JSON array.
		{"json key", one, map[string]any{"id": map[string]any{"k": "v"}}, `[{"k":"v"}]`, true},
		{"composite, in key order", pair, map[string]any{"a": "x", "b": num("2")}, `[2,"x"]`, true},
		{"composite with quotes", pair, map[string]any{"a": `"]`, "b": num("-1")}, `[-1,"\"]"]`, true},
		{"missing key column", one, map[string]any{"x": 1}, "", false},
		{"NULL key column", pair, map[string]any{"a": "x", "b": nil}, "", false},
		{"no key", relationOf(nil, column("a", pgtype.TextOID, false)), map[string]any{"a": "x"}, "", false},
	}
	for _, tc := range tests {
		got, ok := docID(tc.rel, tc.doc)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: docID = %q %v, want %q %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// TestFastTimestamp: the fast path gives exactly what the general path
// gives, and leaves to it everything it does not handle.
func TestFastTimestamp(t *testing.T) {
	general := func(s string, tz bool) any {
		old := s
		if tz {
			for _, l := range tsLayouts {
				if v, err := time.Parse(l, old); err == nil {
					return v.UTC().Format(time.RFC3339Nano)
				}
			}
			return nil
		}
		v, err := time.Parse("2006-01-02 15:04:05.999999999", s)
		if err != nil {
			return nil
		}
		return v.Format("2006-01-02T15:04:05.999999999")
	}
	for _, s := range []string{
		"2026-11-26 16:00:00", "2026-11-26 16:00:00.5", "2026-11-26 16:00:00.123456", "1999-12-31 23:59:59.000001",
		"2024-02-29 00:00:00.01", "0001-01-01 00:00:00",
	} {
		for _, tz := range []bool{false, true} {
			in := s
			if tz {
				in += "+00"
			}
			got, ok := fastTimestamp(in, tz)
			if !ok {
				t.Errorf("fastTimestamp(%q, %v) not taken", in, tz)
				continue
			}
			if want := general(in, tz); got != want {
				t.Errorf("fastTimestamp(%q, %v) = %q, want %q", in, tz, got, want)
			}
		}
	}
	for _, in := range []string{"2026-11-26 16:00:00+05:30", "2026-13-01 00:00:00+00", "2026-02-30 00:00:00+00", "infinity",
		"0044-03-15 12:00:00+00 BC", "12026-01-01 00:00:00+00", "2026-11-26 16:00:00.+00", "2026-11-26 16:00:00.50+00", "0000-01-01 00:00:00+00"} {
		if got, ok := fastTimestamp(in, true); ok {
			t.Errorf("fastTimestamp(%q) = %q; want the general path", in, got)
		}
	}
}

// TestParseTuple: well-formed tuples parse into columns whose values
// outlive the buffer; malformed ones are errors, never panics.
func TestParseTuple(t *testing.T) {
	m := msg('x').tuple(txt("7"), datum{'n', ""}, datum{'u', ""}, txt("héllo"))
	buf := append([]byte(nil), m.b[1:]...)
	buf = append(buf, 'Z')
	cols, rest, err := parseTuple(buf, nil)
	if err != nil || string(rest) != "Z" || len(cols) != 4 || cols[0].text != "7" || cols[1].kind != 'n' || cols[2].kind != 'u' || cols[3].text != "héllo" {
		t.Fatalf("cols %+v rest %q err %v", cols, rest, err)
	}
	clear(buf)
	if cols[3].text != "héllo" {
		t.Fatal("values share the connection's buffer")
	}
	good := m.b[1:]
	for i := 0; i < len(good); i++ {
		if _, _, err := parseTuple(good[:i], nil); err == nil {
			t.Errorf("a tuple cut at %d of %d bytes parsed", i, len(good))
		}
	}
	bad := append([]byte(nil), good...)
	bad[2] = 'q'
	if _, _, err := parseTuple(bad, nil); err == nil {
		t.Error("unknown column kind parsed")
	}
}

// TestShortDecimal: the fast path of numeric agrees with the general rule
// wherever it is taken.
func TestShortDecimal(t *testing.T) {
	for _, s := range []string{"0", "-0", "1.5", "1.50", "-12.25", "123456789012345", "0.000000000000001", "99999999999999.9",
		"1234567890123456", "0.1", "-0.10", "10.", ".5", "-", "-.5", "1e5", "1.2.3", "", "12345678901234567890", "NaN"} {
		fast := shortDecimal(s)
		if !fast {
			continue
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || canonicalDecimal(strconv.FormatFloat(f, 'f', -1, 64)) != canonicalDecimal(s) {
			t.Errorf("shortDecimal(%q) took the fast path, but a float64 reader gets %v", s, f)
		}
	}
	for _, s := range []string{"1234567890123456", "10.", ".5", "-", "1e5", "NaN", "0.12345678901234567"} {
		if shortDecimal(s) {
			t.Errorf("shortDecimal(%q) = true", s)
		}
	}
}

// TestLSNText: positions read and written without fmt match pglogrepl's.
func TestLSNText(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		lsn := pglogrepl.LSN(rng.Uint64())
		switch i {
		case 0:
			lsn = 0
		case 1:
			lsn = pglogrepl.LSN(^uint64(0))
		case 2:
			lsn = 0x16_0000_0001
		}
		if got, want := lsnText(lsn), lsn.String(); got != want {
			t.Fatalf("lsnText(%d) = %q, want %q", lsn, got, want)
		}
		for _, s := range []string{lsn.String(), strings.ToLower(lsn.String())} {
			if got, err := parseLSN(s); err != nil || got != lsn {
				t.Fatalf("parseLSN(%q) = %v, %v; want %v", s, got, err, lsn)
			}
		}
	}
	for _, bad := range []string{"", "16", "/1", "1/", "G/1", "1/2/3", "100000000/0"} {
		if _, err := parseLSN(bad); err == nil {
			t.Errorf("parseLSN(%q) accepted", bad)
		}
	}
}
