package schema

import (
	"encoding/json"
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

// Template is a group or user name with {/json/pointer} holes, e.g.
// "tenant-{/tenant}".
type Template struct {
	lits []string  // len(lits) == len(ptrs)+1
	ptrs []Pointer // document fields between the literals
	src  string
}

// ParseTemplate parses a name template. "{{" and "}}" stand for literal
// braces.
func ParseTemplate(s string) (*Template, error) {
	t := &Template{src: s}
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '{' && i+1 < len(s) && s[i+1] == '{', c == '}' && i+1 < len(s) && s[i+1] == '}':
			lit.WriteByte(c)
			i++
		case c == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return nil, fmt.Errorf("%q has no closing brace", s)
			}
			p, err := ParsePointer(s[i+1 : i+end])
			if err != nil || len(p) == 0 {
				return nil, fmt.Errorf("%q: {%s} is not a JSON Pointer such as {/tenant}", s, s[i+1:i+end])
			}
			t.lits = append(t.lits, lit.String())
			lit.Reset()
			t.ptrs = append(t.ptrs, p)
			i += end
		case c == '}':
			return nil, fmt.Errorf("%q has a closing brace with no opening one", s)
		default:
			lit.WriteByte(c)
		}
	}
	t.lits = append(t.lits, lit.String())
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%q is blank", s)
	}
	return t, nil
}

// Pointers lists the document fields the template reads.
func (t *Template) Pointers() []Pointer { return t.ptrs }

// String is the template's source text.
func (t *Template) String() string { return t.src }

// Render fills the template from doc; it fails when a field is missing or is
// not a scalar, since a made-up group name would leak or lose messages.
func (t *Template) Render(doc any) (string, error) {
	if len(t.ptrs) == 0 {
		return t.lits[0], nil
	}
	var b strings.Builder
	for i, p := range t.ptrs {
		b.WriteString(t.lits[i])
		v, ok := p.Get(doc)
		if !ok {
			return "", fmt.Errorf("template %q: field %s is missing", t.src, p)
		}
		s, ok := ScalarString(v)
		if !ok {
			return "", fmt.Errorf("template %q: field %s is not a string, number or bool", t.src, p)
		}
		b.WriteString(s)
	}
	b.WriteString(t.lits[len(t.lits)-1])
	return b.String(), nil
}
