package publish

import (
	"fmt"

	"github.com/changecast/changecast/changefeed"
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
				p.Set(out, v)
			}
		}
		return out
	}
	for _, p := range r.exclude {
		doc = withoutPath(doc, p)
	}
	return doc
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

// Route is one compiled mapping, as a snapshot reads it: which documents
// go to a group or user, their ids, and their projected encoding, the
// same as the stream's (the Mapper routes with the same rules).
type Route struct{ r *rule }

// CompileRoutes compiles mappings, in order (a Method left empty is
// DefaultMethod).
func CompileRoutes(mappings []Mapping) ([]Route, error) {
	out := make([]Route, 0, len(mappings))
	for i, mp := range mappings {
		if mp.Method == "" {
			mp.Method = DefaultMethod
		}
		r, err := compileRule(i, mp)
		if err != nil {
			return nil, err
		}
		out = append(out, Route{r})
	}
	return out, nil
}

// Mapping is the route's mapping.
func (rt Route) Mapping() Mapping { return rt.r.m }

// Template is the group or user template, nil for a hub-wide mapping.
func (rt Route) Template() *template.Template {
	if rt.r.group != nil {
		return rt.r.group
	}
	return rt.r.user
}

// Match returns the fields a document has when it goes to the group (or
// user, for a user mapping) name; ok is false when the route's template
// cannot render name, or cannot be inverted.
func (rt Route) Match(name string) (m []changefeed.FieldMatch, ok bool) {
	t := rt.Template()
	if t == nil {
		return nil, true
	}
	fields, vals, ok := t.Invert(name)
	if !ok {
		return nil, false
	}
	for i, f := range fields {
		m = append(m, changefeed.FieldMatch{Field: f, Value: vals[i]})
	}
	return m, true
}

// Audience is where doc goes under the route.
func (rt Route) Audience(doc map[string]any) (Audience, error) { return rt.r.audience(doc) }

// ID is doc's id under the route: its key fields, or the source's id.
func (rt Route) ID(doc map[string]any, sourceID string) string {
	id, err := rt.r.id(doc, sourceID)
	if err != nil {
		return sourceID
	}
	return id
}

// Encode projects doc (include/exclude) and encodes it as the stream
// encodes a document.
func (rt Route) Encode(b []byte, doc map[string]any) ([]byte, error) {
	return wire.AppendValue(b, rt.r.project(doc))
}
