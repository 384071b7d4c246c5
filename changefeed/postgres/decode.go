package postgres

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/changecast/changecast/schema/wire"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"
)

// Value decoding: pgoutput sends every value in its text form (we do not ask
// for binary). These pure functions turn that text into JSON-ready Go values
// without losing information.

// decodeValue converts one column's text value of type oid to a JSON value:
// int64, json.Number, string, bool, nil, or decoded JSON (map/slice) for
// json/jsonb. known is false for types it does not know; their text form is
// returned.
func decodeValue(tm *pgtype.Map, oid uint32, text []byte) (v any, known bool, err error) {
	return decodeText(tm, oid, string(text))
}

// decodeText is decodeValue of a value already in a string (the stream's
// tuples share one string per row).
func decodeText(tm *pgtype.Map, oid uint32, s string) (v any, known bool, err error) {
	switch oid {
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID, pgtype.XIDOID, pgtype.CIDOID:
		// Kept as json.Number (checked, not converted): the JSON text is
		// PostgreSQL's own, and the pipeline's diff works on json.Number.
		if _, err := strconv.ParseInt(s, 10, 64); err != nil {
			if _, uerr := strconv.ParseUint(s, 10, 64); uerr != nil {
				return nil, true, fmt.Errorf("integer %q: %w", s, err)
			}
		}
		return json.Number(s), true, nil
	case pgtype.Float4OID, pgtype.Float8OID:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			// NaN and ±Infinity have no JSON number; keep PostgreSQL's text.
			return s, true, nil
		}
		return json.Number(s), true, nil
	case pgtype.NumericOID:
		return numeric(s), true, nil
	case pgtype.BoolOID:
		switch s {
		case "t":
			return true, true, nil
		case "f":
			return false, true, nil
		}
		return nil, true, fmt.Errorf("bool %q", s)
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID, pgtype.QCharOID, pgtype.UUIDOID,
		pgtype.DateOID, pgtype.TimeOID, pgtype.TimetzOID, pgtype.IntervalOID, pgtype.InetOID, pgtype.CIDROID,
		pgtype.MacaddrOID, pgtype.XMLOID, pgtype.BitOID, pgtype.VarbitOID, pgtype.TSVectorOID, pgtype.JSONPathOID,
		pgtype.Int4rangeOID, pgtype.Int8rangeOID, pgtype.NumrangeOID, pgtype.DaterangeOID, pgtype.TsrangeOID, pgtype.TstzrangeOID,
		pgtype.PointOID, pgtype.LineOID, pgtype.LsegOID, pgtype.BoxOID, pgtype.PathOID, pgtype.PolygonOID, pgtype.CircleOID, 790 /* money */ :
		// Text is these types' natural JSON form.
		return s, true, nil
	case pgtype.JSONOID, pgtype.JSONBOID:
		var x any
		d := json.NewDecoder(strings.NewReader(s))
		d.UseNumber()
		if err := d.Decode(&x); err != nil {
			return nil, true, fmt.Errorf("json: %w", err)
		}
		return x, true, nil
	case pgtype.TimestamptzOID:
		return timestamp(s, true)
	case pgtype.TimestampOID:
		return timestamp(s, false)
	case pgtype.ByteaOID:
		b, err := byteaText(s)
		if err != nil {
			return nil, true, err
		}
		return base64.StdEncoding.EncodeToString(b), true, nil
	}
	if t, ok := tm.TypeForOID(oid); ok {
		if ac, ok := t.Codec.(*pgtype.ArrayCodec); ok {
			return decodeArray(tm, oid, ac, s)
		}
	}
	return s, false, nil
}

// numeric keeps a numeric as a JSON number when a float64 reader (every
// JavaScript client) gets exactly the same value, and as a string otherwise.
func numeric(s string) any {
	if shortDecimal(s) {
		return json.Number(s)
	}
	if s == "NaN" || s == "Infinity" || s == "-Infinity" {
		return s
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return s
	}
	if canonicalDecimal(strconv.FormatFloat(f, 'f', -1, 64)) == canonicalDecimal(s) {
		return json.Number(s)
	}
	return s
}

// shortDecimal reports whether s is a plain decimal ("-12.50") of at most
// 15 digits and 17 characters: every such decimal survives a float64 round
// trip, so numeric keeps it as a number without formatting a float
// (profiling: that was most of a numeric column's cost).
func shortDecimal(s string) bool {
	if len(s) == 0 || len(s) > 17 {
		return false
	}
	i := 0
	if s[0] == '-' {
		i++
	}
	digits, dot := 0, false
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' && !dot:
			dot = true
		default:
			return false
		}
	}
	return digits > 0 && digits <= 15 && s[len(s)-1] != '.' && s[0] != '.' && !(s[0] == '-' && (len(s) == 1 || s[1] == '.'))
}

// canonicalDecimal strips insignificant zeros: "1.500" → "1.5", "-0.0" → "0".
func canonicalDecimal(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	if i := strings.IndexByte(s, '.'); i >= 0 {
		s = strings.TrimRight(s, "0")
		s = strings.TrimSuffix(s, ".")
	}
	s = strings.TrimLeft(s, "0")
	if s == "" || s[0] == '.' {
		s = "0" + s
	}
	if neg && s != "0" {
		s = "-" + s
	}
	return s
}

var tsLayouts = []string{
	"2006-01-02 15:04:05.999999999Z07:00:00",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z07",
}

// timestamp renders a timestamp in RFC 3339: with tz, in UTC ("…Z"); without
// tz, the same form without an offset (PostgreSQL does not know the zone).
// ±infinity and BC dates keep PostgreSQL's text.
func timestamp(s string, tz bool) (any, bool, error) {
	if r, ok := fastTimestamp(s, tz); ok {
		return r, true, nil
	}
	if s == "infinity" || s == "-infinity" || strings.HasSuffix(s, " BC") {
		return s, true, nil
	}
	if !tz {
		t, err := time.Parse("2006-01-02 15:04:05.999999999", s)
		if err != nil {
			return nil, true, fmt.Errorf("timestamp %q: %w", s, err)
		}
		return t.Format("2006-01-02T15:04:05.999999999"), true, nil
	}
	for _, l := range tsLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC().Format(time.RFC3339Nano), true, nil
		}
	}
	return nil, true, fmt.Errorf("timestamptz %q is not in ISO DateStyle", s)
}

// fastTimestamp rewrites the form the replication session always sends
// (timezone UTC, DateStyle ISO): "2006-01-02 15:04:05[.ffffff]" and, with
// tz, "+00" after it, into the RFC 3339 text timestamp would produce, without
// parsing a time: PostgreSQL already drops a fraction's trailing zeros, as
// RFC3339Nano does. Anything else (other offsets, years past 9999, BC,
// infinity) takes the general path. (Profiling: time.Parse was most of a
// timestamptz column's cost, and its failed layouts allocated errors.)
func fastTimestamp(s string, tz bool) (string, bool) {
	if tz {
		if !strings.HasSuffix(s, "+00") {
			return "", false
		}
		s = s[:len(s)-3]
	}
	const base = len("2006-01-02 15:04:05")
	if len(s) < base || s[4] != '-' || s[7] != '-' || s[10] != ' ' || s[13] != ':' || s[16] != ':' {
		return "", false
	}
	for _, i := range [...]int{0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18} {
		if s[i] < '0' || s[i] > '9' {
			return "", false
		}
	}
	if len(s) > base {
		frac := s[base:]
		if len(frac) < 2 || len(frac) > 10 || frac[0] != '.' || frac[len(frac)-1] == '0' {
			return "", false
		}
		for i := 1; i < len(frac); i++ {
			if frac[i] < '0' || frac[i] > '9' {
				return "", false
			}
		}
	}
	if s[0] == '0' && s[1] == '0' && s[2] == '0' && s[3] == '0' {
		return "", false // year 0 is 1 BC: the general path refuses it too
	}
	// Reject what time.Parse would refuse (month 13, Feb 30, hour 24, …).
	num := func(i int) int { return int(s[i]-'0')*10 + int(s[i+1]-'0') }
	year := num(0)*100 + num(2)
	month, day := num(5), num(8)
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || num(11) > 23 || num(14) > 59 || num(17) > 59 {
		return "", false
	}
	b := make([]byte, 0, len(s)+1)
	b = append(b, s[:10]...)
	b = append(b, 'T')
	b = append(b, s[11:]...)
	if tz {
		b = append(b, 'Z')
	}
	return string(b), true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// byteaText decodes bytea's text output: hex ("\x0a0b") or, with
// bytea_output=escape, octal escapes.
func byteaText(s string) ([]byte, error) {
	if strings.HasPrefix(s, `\x`) {
		return hex.DecodeString(s[2:])
	}
	var out []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			out = append(out, s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '\\' {
			out = append(out, '\\')
			i++
			continue
		}
		if i+4 > len(s) {
			return nil, fmt.Errorf("bytea escape at %d", i)
		}
		n, err := strconv.ParseUint(s[i+1:i+4], 8, 8)
		if err != nil {
			return nil, fmt.Errorf("bytea escape %q", s[i:i+4])
		}
		out = append(out, byte(n))
		i += 3
	}
	return out, nil
}

// decodeArray parses an array's text form with pgx's array codec, then
// converts each element with decodeValue so elements follow the same rules
// as columns. A multidimensional array becomes nested JSON arrays.
func decodeArray(tm *pgtype.Map, oid uint32, ac *pgtype.ArrayCodec, text string) (any, bool, error) {
	if out, ok := simpleArray(text); ok {
		for i, e := range out {
			if e == nil {
				continue
			}
			v, _, err := decodeText(tm, ac.ElementType.OID, e.(string))
			if err != nil {
				return nil, true, err
			}
			out[i] = v
		}
		return out, true, nil
	}
	// Scan the elements as text, then convert each with the element's type.
	var arr pgtype.Array[pgtype.Text]
	if err := tm.Scan(oid, pgtype.TextFormatCode, []byte(text), &arr); err != nil {
		return nil, true, fmt.Errorf("array: %w", err)
	}
	elemOID := ac.ElementType.OID
	out := make([]any, len(arr.Elements))
	for i, e := range arr.Elements {
		if !e.Valid {
			continue
		}
		v, _, err := decodeText(tm, elemOID, e.String)
		if err != nil {
			return nil, true, err
		}
		out[i] = v
	}
	return nest(out, arr.Dims), true, nil
}

// simpleArray splits the common case of an array's text form without
// pgtype's general parser (a visible share of decoding in profiles): one
// dimension, default bounds, no quoted or escaped element, e.g. {a,b,NULL}
// or {1,2.5}. It gives each element's text (nil for NULL), and false for
// anything else ({{1,2},{3,4}}, [0:1]={1,2}, {"a b","c,d"}).
func simpleArray(text string) ([]any, bool) {
	if len(text) < 2 || text[0] != '{' || text[len(text)-1] != '}' {
		return nil, false
	}
	body := text[1 : len(text)-1]
	if body == "" {
		return []any{}, true
	}
	if strings.ContainsAny(body, `{}\"`) {
		return nil, false
	}
	out := make([]any, 0, strings.Count(body, ",")+1)
	for {
		e, rest, more := strings.Cut(body, ",")
		if e == "" || e != strings.TrimSpace(e) {
			// Empty elements and surrounding blanks are pgtype's to judge.
			return nil, false
		}
		if strings.EqualFold(e, "NULL") {
			out = append(out, nil)
		} else {
			out = append(out, e)
		}
		if !more {
			break
		}
		body = rest
	}
	return out, true
}

// nest shapes the elements of an array, in PostgreSQL's row-major order, by
// its dimensions (arrays are rectangular). Lower bounds have no JSON form
// and are dropped.
func nest(flat []any, dims []pgtype.ArrayDimension) []any {
	if len(dims) <= 1 || len(flat) == 0 {
		return flat
	}
	n := int(dims[0].Length)
	size := len(flat) / n
	out := make([]any, n)
	for i := range out {
		out[i] = nest(flat[i*size:(i+1)*size], dims[1:])
	}
	return out
}

// relation is the cached shape of one table, from a Relation message.
type relation struct {
	msg        *pglogrepl.RelationMessage
	collection string // schema.table
	key        []int  // column indexes of the document key
	identFull  bool   // REPLICA IDENTITY FULL
}

// rowResult is a decoded tuple.
type rowResult struct {
	doc       map[string]any
	unchanged []string // 'u' columns
	err       error    // first column that could not be decoded
}

// tupleCol is one column of a pgoutput TupleData: its kind ('n' null, 'u'
// unchanged TOAST, 't' text, 'b' binary) and, for text, its value.
type tupleCol struct {
	kind byte
	text string
}

// parseTuple reads a pgoutput TupleData from data into cols (reused) and
// returns the bytes after it. Every text value is a substring of one string
// copied from data, so a row costs one copy however many columns it has
// (pglogrepl's parser copies each column; profiling showed that and the
// strings made from the copies as the decoder's largest cost), and the
// values outlive data, which the connection reuses.
func parseTuple(data []byte, cols []tupleCol) ([]tupleCol, []byte, error) {
	if len(data) < 2 {
		return nil, nil, fmt.Errorf("pgoutput: tuple: short")
	}
	n := int(binary.BigEndian.Uint16(data))
	// First pass: find the tuple's end, so one string holds it all.
	end := 2
	for i := 0; i < n; i++ {
		if end >= len(data) {
			return nil, nil, fmt.Errorf("pgoutput: tuple: column %d missing", i)
		}
		switch data[end] {
		case 'n', 'u':
			end++
		case 't', 'b':
			if end+5 > len(data) {
				return nil, nil, fmt.Errorf("pgoutput: tuple: column %d: short length", i)
			}
			l := int(binary.BigEndian.Uint32(data[end+1:]))
			end += 5 + l
			if l < 0 || end > len(data) {
				return nil, nil, fmt.Errorf("pgoutput: tuple: column %d: %d bytes past the message", i, l)
			}
		default:
			return nil, nil, fmt.Errorf("pgoutput: tuple: column %d: unknown kind %q", i, data[end])
		}
	}
	all := string(data[:end])
	cols = cols[:0]
	for i, off := 0, 2; i < n; i++ {
		c := tupleCol{kind: all[off]}
		off++
		if c.kind == 't' || c.kind == 'b' {
			l := int(binary.BigEndian.Uint32(data[off:]))
			c.text = all[off+4 : off+4+l]
			off += 4 + l
		}
		cols = append(cols, c)
	}
	return cols, data[end:], nil
}

// decodeTuple turns a tuple into a document. onlyKey keeps only the key
// columns (a 'K' old tuple, whose other slots are not NULL but absent).
// unknown is called once per column of an unknown type.
func decodeTuple(tm *pgtype.Map, rel *relation, tup []tupleCol, onlyKey bool, unknown func(col string, oid uint32)) rowResult {
	return decodeTupleLike(tm, rel, tup, onlyKey, unknown, nil, nil)
}

// decodeTupleLike is decodeTuple where like, when not nil, is another
// tuple of the same relation decoded into likeDoc: a column whose text
// equals its column there takes its value (decoded values are never
// modified), so the old tuple of an update under REPLICA IDENTITY FULL
// costs a decode only for the columns that changed.
func decodeTupleLike(tm *pgtype.Map, rel *relation, tup []tupleCol, onlyKey bool, unknown func(col string, oid uint32), like []tupleCol, likeDoc map[string]any) rowResult {
	if tup == nil {
		return rowResult{doc: map[string]any{}}
	}
	r := rowResult{doc: make(map[string]any, len(tup))}
	for i, c := range tup {
		if i >= len(rel.msg.Columns) {
			break
		}
		col := rel.msg.Columns[i]
		if onlyKey && col.Flags&1 == 0 {
			continue
		}
		switch c.kind {
		case 'n':
			r.doc[col.Name] = nil
		case 'u':
			r.unchanged = append(r.unchanged, col.Name)
		case 't':
			if i < len(like) && like[i].kind == 't' && like[i].text == c.text {
				if v, ok := likeDoc[col.Name]; ok {
					r.doc[col.Name] = v
					continue
				}
			}
			v, known, err := decodeText(tm, col.DataType, c.text)
			if err != nil {
				if r.err == nil {
					r.err = fmt.Errorf("column %s: %w", col.Name, err)
				}
				continue
			}
			if !known && unknown != nil {
				unknown(col.Name, col.DataType)
			}
			r.doc[col.Name] = v
		case 'b':
			if r.err == nil {
				r.err = fmt.Errorf("column %s: binary tuple data not requested", col.Name)
			}
		}
	}
	return r
}

// docID renders the document id from the key columns of doc: one column's
// text, or a JSON array for a composite key. ok is false when a key column
// is missing or null.
func docID(rel *relation, doc map[string]any) (string, bool) {
	if len(rel.key) == 0 {
		return "", false
	}
	vals := make([]any, len(rel.key))
	for i, k := range rel.key {
		v, ok := doc[rel.msg.Columns[k].Name]
		if !ok || v == nil {
			return "", false
		}
		vals[i] = v
	}
	id, err := wire.FormatID(vals...)
	return id, err == nil
}

// lsnText is lsn as PostgreSQL writes it ("16/B374D848"): what
// pglogrepl.LSN.String returns, without fmt (positions are formatted and
// parsed for every transaction; fmt's were a visible share of a stream's
// garbage).
func lsnText(lsn pglogrepl.LSN) string {
	var b [17]byte
	out := strconv.AppendUint(b[:0], uint64(lsn)>>32, 16)
	out = append(out, '/')
	out = strconv.AppendUint(out, uint64(uint32(lsn)), 16)
	for i, c := range out {
		if c >= 'a' && c <= 'f' {
			out[i] = c - 'a' + 'A'
		}
	}
	return string(out)
}

// parseLSN reads "16/B374D848" (either case), as pglogrepl.ParseLSN does,
// without fmt.
func parseLSN(s string) (pglogrepl.LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	h, herr := strconv.ParseUint(hi, 16, 32)
	l, lerr := strconv.ParseUint(lo, 16, 32)
	if !ok || herr != nil || lerr != nil {
		return 0, fmt.Errorf("invalid LSN %q", s)
	}
	return pglogrepl.LSN(h<<32 | l), nil
}
