package publish

import (
	"fmt"

	"github.com/changecast/changecast/schema/template"
	"github.com/changecast/changecast/schema/wire"
)

// rule is one compiled mapping.
type rule struct {
	idx     int
	fp      string // fingerprint, for ShadowStore keys
	m       Mapping
	group   *template.Template
	user    *template.Template
	key     []template.Pointer
	include []template.Pointer
	exclude []template.Pointer
}

func compileRule(idx int, m Mapping) (*rule, error) {
	r := &rule{idx: idx, m: m, fp: fingerprint(m)}
	var err error
	if m.Group != "" {
		if r.group, err = template.Parse(m.Group); err != nil {
			return nil, fmt.Errorf("mappings[%d].group: %w", idx, err)
		}
	}
	if m.User != "" {
		if r.user, err = template.Parse(m.User); err != nil {
			return nil, fmt.Errorf("mappings[%d].user: %w", idx, err)
		}
	}
	parse := func(field string, in []string) ([]template.Pointer, error) {
		out := make([]template.Pointer, 0, len(in))
		for j, s := range in {
			p, err := template.ParsePointer(s)
			if err != nil {
				return nil, fmt.Errorf("mappings[%d].%s[%d]: %w", idx, field, j, err)
			}
			out = append(out, p)
		}
		return out, nil
	}
	if r.key, err = parse("key", m.Key); err != nil {
		return nil, err
	}
	if r.include, err = parse("include", m.Include); err != nil {
		return nil, err
	}
	if r.exclude, err = parse("exclude", m.Exclude); err != nil {
		return nil, err
	}
	return r, nil
}

// routed reports whether the target depends on the document.
func (r *rule) routed() bool { return r.group != nil || r.user != nil }

// audience renders where doc goes under this rule.
func (r *rule) audience(doc map[string]any) (Audience, error) {
	t := Audience{Hub: r.m.Hub, Method: r.m.Method}
	var err error
	switch {
	case r.group != nil:
		t.Group, err = r.group.Render(doc)
	case r.user != nil:
		t.User, err = r.user.Render(doc)
	}
	return t, err
}

// id is the document id under this rule: the mapping's key pointers, or the
// source's id when the mapping names none.
func (r *rule) id(doc map[string]any, fallback string) (string, error) {
	if len(r.key) == 0 || doc == nil {
		return fallback, nil
	}
	return KeyID(doc, r.key)
}

// KeyID renders a document id from key fields: one field's scalar text, or a
// JSON array of the values for a composite key.
func KeyID(doc map[string]any, key []template.Pointer) (string, error) {
	vals := make([]any, len(key))
	for i, p := range key {
		v, ok := p.Get(doc)
		if !ok || v == nil {
			return "", fmt.Errorf("key field %s is missing", p)
		}
		vals[i] = v
	}
	return wire.FormatID(vals...)
}

// project applies include/exclude. It never modifies doc: it copies only
// the maps along the paths it changes.
func (r *rule) project(doc map[string]any) map[string]any {
	if len(r.include) > 0 {
		out := map[string]any{}
		for _, p := range r.include {
			if v, ok := p.Get(doc); ok {
				setPath(out, p, v)
			}
		}
		return out
	}
	for _, p := range r.exclude {
		doc = withoutPath(doc, p)
	}
	return doc
}

func setPath(dst map[string]any, p template.Pointer, v any) {
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

func withoutPath(doc map[string]any, p template.Pointer) map[string]any {
	if len(p) == 0 {
		return doc
	}
	v, ok := doc[p[0]]
	if !ok {
		return doc
	}
	out := make(map[string]any, len(doc))
	for k, x := range doc {
		out[k] = x
	}
	if len(p) == 1 {
		delete(out, p[0])
		return out
	}
	if sub, ok := v.(map[string]any); ok {
		out[p[0]] = withoutPath(sub, p[1:])
	}
	return out
}
