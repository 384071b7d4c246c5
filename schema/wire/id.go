package wire

import (
	"encoding/json"
	"strconv"
)

// ScalarString is the text a scalar contributes to a template or a key: a
// string as itself, a number in its JSON form, a bool as true/false. Objects,
// arrays and null have none.
func ScalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case int:
		return strconv.Itoa(x), true
	}
	return "", false
}

// FormatID renders a document id from its key values: one scalar's text
// (ScalarString), or else the JSON array of the values, which is how a
// composite key appears in an Entry's id.
func FormatID(vals ...any) (string, error) {
	if len(vals) == 1 {
		if s, ok := ScalarString(vals[0]); ok {
			return s, nil
		}
	}
	b, err := AppendValue(nil, vals)
	return string(b), err
}
