package template

import (
	"fmt"
	"strconv"
	"strings"
)

// Pointer is a parsed RFC 6901 JSON Pointer. The empty pointer is the whole
// document.
type Pointer []string

// ParsePointer parses "/a/b~1c" into its reference tokens.
func ParsePointer(s string) (Pointer, error) {
	if s == "" {
		return Pointer{}, nil
	}
	if s[0] != '/' {
		return nil, fmt.Errorf("%q is not a JSON Pointer (it must start with /)", s)
	}
	parts := strings.Split(s[1:], "/")
	for i, p := range parts {
		if strings.Contains(strings.ReplaceAll(strings.ReplaceAll(p, "~0", ""), "~1", ""), "~") {
			return nil, fmt.Errorf("%q has a ~ that is not ~0 or ~1", s)
		}
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(p, "~1", "/"), "~0", "~")
	}
	return Pointer(parts), nil
}

// String renders the pointer back in RFC 6901 form.
func (p Pointer) String() string {
	var b strings.Builder
	for _, t := range p {
		b.WriteByte('/')
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1"))
	}
	return b.String()
}

// Get returns the value at p in a document decoded into map[string]any /
// []any values.
func (p Pointer) Get(doc any) (any, bool) {
	cur := doc
	for _, t := range p {
		switch v := cur.(type) {
		case map[string]any:
			x, ok := v[t]
			if !ok {
				return nil, false
			}
			cur = x
		case []any:
			i, err := strconv.Atoi(t)
			if err != nil || i < 0 || i >= len(v) {
				return nil, false
			}
			cur = v[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// Set writes v at p into dst, creating the objects along the path (an
// existing non-object value on the way is replaced). The empty pointer
// sets nothing.
func (p Pointer) Set(dst map[string]any, v any) {
	if len(p) == 0 {
		return
	}
	cur := dst
	for _, t := range p[:len(p)-1] {
		next, ok := cur[t].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[t] = next
		}
		cur = next
	}
	cur[p[len(p)-1]] = v
}
