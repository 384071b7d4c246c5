package template

import (
	"fmt"
	"strings"

	"github.com/changecast/changecast/schema/wire"
)

// lex splits a template into literals and holes: "tenant-{/tenant}" gives
// lits ["tenant-", ""] and holes ["/tenant"]. "{{" and "}}" stand for
// literal braces. len(lits) == len(holes)+1. Document and claim templates
// share it and differ only in what a hole may hold.
func lex(s string) (lits, holes []string, err error) {
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case (c == '{' || c == '}') && i+1 < len(s) && s[i+1] == c:
			lit.WriteByte(c)
			i++
		case c == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return nil, nil, fmt.Errorf("%q has no closing brace", s)
			}
			lits = append(lits, lit.String())
			lit.Reset()
			holes = append(holes, s[i+1:i+end])
			i += end
		case c == '}':
			return nil, nil, fmt.Errorf("%q has a closing brace with no opening one", s)
		default:
			lit.WriteByte(c)
		}
	}
	return append(lits, lit.String()), holes, nil
}

// Template is a group or user name with {/json/pointer} holes over a
// document, e.g. "tenant-{/tenant}".
type Template struct {
	lits []string  // len(lits) == len(ptrs)+1
	ptrs []Pointer // document fields between the literals
	src  string
}

// Parse parses a document name template.
func Parse(s string) (*Template, error) {
	lits, holes, err := lex(s)
	if err != nil {
		return nil, err
	}
	t := &Template{lits: lits, src: s}
	for _, h := range holes {
		p, err := ParsePointer(h)
		if err != nil || len(p) == 0 {
			return nil, fmt.Errorf("%q: {%s} is not a JSON Pointer such as {/tenant}", s, h)
		}
		t.ptrs = append(t.ptrs, p)
	}
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%q is blank", s)
	}
	return t, nil
}

// Pointers lists the document fields the template reads.
func (t *Template) Pointers() []Pointer { return t.ptrs }

// Literals are the fixed texts around the holes: len(Literals()) ==
// len(Pointers())+1.
func (t *Template) Literals() []string { return t.lits }

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
		s, ok := wire.ScalarString(v)
		if !ok {
			return "", fmt.Errorf("template %q: field %s is not a string, number or bool", t.src, p)
		}
		b.WriteString(s)
	}
	b.WriteString(t.lits[len(t.lits)-1])
	return b.String(), nil
}

// Claims is a group name with {claims.NAME} holes over a caller's token
// claims, e.g. "tenant-{claims.tid}".
type Claims struct {
	lits   []string // len(lits) == len(claims)+1
	claims []string
	src    string
}

// ParseClaims parses a negotiate group template.
func ParseClaims(s string) (*Claims, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%q is blank", s)
	}
	lits, holes, err := lex(s)
	if err != nil {
		return nil, err
	}
	t := &Claims{lits: lits, src: s}
	for _, h := range holes {
		name, ok := strings.CutPrefix(h, "claims.")
		if !ok || name == "" {
			return nil, fmt.Errorf("%q: {%s} is not a claim such as {claims.tid}", s, h)
		}
		t.claims = append(t.claims, name)
	}
	return t, nil
}

// String is the template's source text.
func (t *Claims) String() string { return t.src }

// Names lists the claims the template reads.
func (t *Claims) Names() []string { return t.claims }

// Render returns the groups the template gives for claims. A claim that is
// a string, number or bool fills its hole once; an array fills it once per
// scalar element (so roles: [a, b] gives two groups). A missing or empty
// claim gives no group at all: a made-up name could let a user into a group
// it is not entitled to.
func (t *Claims) Render(claims map[string]any) []string {
	out := []string{t.lits[0]}
	for i, name := range t.claims {
		vals := claimValues(claims[name])
		if len(vals) == 0 {
			return nil
		}
		next := make([]string, 0, len(out)*len(vals))
		for _, prefix := range out {
			for _, v := range vals {
				next = append(next, prefix+v+t.lits[i+1])
			}
		}
		out = next
	}
	return out
}

func claimValues(v any) []string {
	if arr, ok := v.([]any); ok {
		var out []string
		for _, e := range arr {
			if s, ok := wire.ScalarString(e); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	if s, ok := wire.ScalarString(v); ok && s != "" {
		return []string{s}
	}
	return nil
}

// Invertible reports whether Invert can recover the fields from any name:
// a template with at most one hole (with two or more, "{/a}-{/b}" and
// "x-y-z" could be split either way).
func (t *Template) Invertible() bool { return len(t.ptrs) <= 1 }

// Invert returns the field values that render name: for "tenant-{/tenant}"
// and "tenant-acme", /tenant = "acme". ok is false when name cannot be
// rendered by the template (another prefix, an empty value) or the
// template is not Invertible. A template without holes inverts to no
// fields when name is its text.
func (t *Template) Invert(name string) (fields []Pointer, values []string, ok bool) {
	switch len(t.ptrs) {
	case 0:
		return nil, nil, name == t.lits[0]
	case 1:
		pre, suf := t.lits[0], t.lits[1]
		if len(name) < len(pre)+len(suf)+1 || !strings.HasPrefix(name, pre) || !strings.HasSuffix(name, suf) {
			return nil, nil, false
		}
		return []Pointer{t.ptrs[0]}, []string{name[len(pre) : len(name)-len(suf)]}, true
	}
	return nil, nil, false
}
