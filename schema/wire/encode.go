package wire

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The hot path encodes every change and every document once. These
// encoders write the same JSON as encoding/json for the values a change
// feed produces (maps with string keys in sorted order, slices, strings,
// json.Number, int64, float64, bool, nil, json.RawMessage) without its
// reflection and without re-compacting raw values, which is most of its
// cost here. Anything else falls back to encoding/json.

// AppendJSON appends c as JSON; the output equals json.Marshal(c) except
// that raw fields (Patch, Doc) are copied as they are, not compacted (they
// come from this package's encoders or jsondiff, already compact).
func (c *Entry) AppendJSON(b []byte) []byte {
	b, _ = c.AppendJSONDoc(b)
	return b
}

// AppendJSONDoc is AppendJSON that also returns the part of the output
// that holds Doc (nil without one), so a caller can keep the document
// without a second copy of it.
// JSONSize is the length of c's encoding when none of its strings needs
// escaping (the usual case): a buffer of this capacity takes AppendJSON
// without growing.
func (c *Entry) JSONSize() int {
	// The field names, quotes, commas and braces of every field: 84.
	const frame = 96
	return frame + len(c.Op) + len(c.Collection) + len(c.ID) + len(c.V) + len(c.PV) + len(c.Patch) + len(c.Doc) + len(c.TS) + len(c.Reason)
}

func (c *Entry) AppendJSONDoc(b []byte) (out, doc []byte) {
	var docStart, docEnd int
	b = append(b, `{"op":`...)
	b = AppendString(b, c.Op)
	b = append(b, `,"collection":`...)
	b = AppendString(b, c.Collection)
	if c.ID != "" {
		b = append(b, `,"id":`...)
		b = AppendString(b, c.ID)
	}
	b = append(b, `,"v":`...)
	b = AppendString(b, c.V)
	if c.PV != "" {
		b = append(b, `,"pv":`...)
		b = AppendString(b, c.PV)
	}
	if len(c.Patch) > 0 {
		b = append(b, `,"patch":`...)
		b = append(b, c.Patch...)
	}
	if len(c.Doc) > 0 {
		b = append(b, `,"doc":`...)
		docStart = len(b)
		b = append(b, c.Doc...)
		docEnd = len(b)
	}
	if c.TS != "" {
		b = append(b, `,"ts":`...)
		b = AppendString(b, c.TS)
	}
	if c.Reason != "" {
		b = append(b, `,"reason":`...)
		b = AppendString(b, c.Reason)
	}
	b = append(b, '}')
	if docEnd > docStart {
		doc = b[docStart:docEnd:docEnd]
	}
	return b, doc
}

// AppendValue appends v as JSON. Map keys are sorted, as encoding/json
// sorts them.
func AppendValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return AppendString(b, x), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case json.Number:
		if x == "" {
			return append(b, '0'), nil
		}
		return append(b, x...), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			break
		}
		return appendFloat(b, x), nil
	case json.RawMessage:
		if len(x) == 0 {
			return append(b, "null"...), nil
		}
		return append(b, x...), nil
	case map[string]any:
		if len(x) == 0 {
			return append(b, "{}"...), nil
		}
		// Rows have a handful of columns: sort them on the stack, names
		// with their values (no second lookup of each name).
		var small [16]field
		fields := small[:0]
		if len(x) > len(small) {
			fields = make([]field, 0, len(x))
		}
		for k, v := range x {
			fields = append(fields, field{k, v})
		}
		slices.SortFunc(fields, func(a, b field) int { return strings.Compare(a.k, b.k) })
		b = append(b, '{')
		for i, f := range fields {
			if i > 0 {
				b = append(b, ',')
			}
			b = AppendString(b, f.k)
			b = append(b, ':')
			var err error
			if b, err = AppendValue(b, f.v); err != nil {
				return b, err
			}
		}
		return append(b, '}'), nil
	case []any:
		if x == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = AppendValue(b, e); err != nil {
				return b, err
			}
		}
		return append(b, ']'), nil
	}
	j, err := json.Marshal(v)
	if err != nil {
		return b, err
	}
	return append(b, j...), nil
}

// appendFloat formats like encoding/json.
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hex = "0123456789abcdef"

// field is one member of an object being encoded.
type field struct {
	k string
	v any
}

// plain marks the ASCII bytes a JSON string carries as they are: one
// lookup per byte instead of six comparisons (profiling: AppendString was
// the encoder's largest cost).
var plain = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// AppendString appends s as a JSON string, escaping like encoding/json
// (including <, > and & as \u003c etc., and U+2028/2029); invalid UTF-8
// becomes U+FFFD.
func AppendString(b []byte, s string) []byte {
	b = append(slices.Grow(b, len(s)+2), '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if plain[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
