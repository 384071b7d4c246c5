package template

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestTemplate(t *testing.T) {
	tp, err := Parse("tenant-{/tenant}-{/a~1b}{{x}}")
	if err != nil {
		t.Fatal(err)
	}
	doc := map[string]any{"tenant": "acme", "a/b": json.Number("7")}
	if got, err := tp.Render(doc); err != nil || got != "tenant-acme-7{x}" {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := tp.Render(map[string]any{"tenant": map[string]any{}}); err == nil {
		t.Fatal("an object field must not render")
	}
	for _, bad := range []string{"{/x", "x}", "{tenant}", "{}", "  "} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestClaims(t *testing.T) {
	tp, err := ParseClaims("t-{claims.tid}-{claims.roles}{{")
	if err != nil {
		t.Fatal(err)
	}
	got := tp.Render(map[string]any{"tid": "acme", "roles": []any{"a", "b", map[string]any{}, ""}})
	if len(got) != 2 || got[0] != "t-acme-a{" || got[1] != "t-acme-b{" {
		t.Fatalf("got %q", got)
	}
	if got := tp.Render(map[string]any{"tid": "acme"}); got != nil {
		t.Fatalf("a missing claim must give no group, got %q", got)
	}
	for _, bad := range []string{"{claims.x", "x}", "{tid}", "{claims.}", " "} {
		if _, err := ParseClaims(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestInvert(t *testing.T) {
	cases := []struct {
		tmpl, name string
		ok         bool
		field, val string
	}{
		{"tenant-{/tenant}", "tenant-acme", true, "/tenant", "acme"},
		{"tenant-{/tenant}", "tenant-", false, "", ""},
		{"tenant-{/tenant}", "other-acme", false, "", ""},
		{"{/meta/t}-x", "a-b-x", true, "/meta/t", "a-b"},
		{"all", "all", true, "", ""},
		{"all", "some", false, "", ""},
		{"{/a}-{/b}", "x-y", false, "", ""},
	}
	for _, c := range cases {
		tp, err := Parse(c.tmpl)
		if err != nil {
			t.Fatal(err)
		}
		fields, vals, ok := tp.Invert(c.name)
		if ok != c.ok {
			t.Errorf("%s ← %q: ok %v", c.tmpl, c.name, ok)
			continue
		}
		if c.field != "" && (len(fields) != 1 || fields[0].String() != c.field || vals[0] != c.val) {
			t.Errorf("%s ← %q: %v %v", c.tmpl, c.name, fields, vals)
		}
		if ok && c.field != "" {
			doc := map[string]any{}
			setAt(doc, fields[0], vals[0])
			if got, err := tp.Render(doc); err != nil || got != c.name {
				t.Errorf("%s: rendering the inverted fields gives %q, %v", c.tmpl, got, err)
			}
		}
	}
	if tp, _ := Parse("{/a}-{/b}"); tp.Invertible() {
		t.Error("two holes invertible")
	}
}

func setAt(doc map[string]any, p Pointer, v any) {
	for _, k := range p[:len(p)-1] {
		next := map[string]any{}
		doc[k] = next
		doc = next
	}
	doc[p[len(p)-1]] = v
}

func TestPointerSet(t *testing.T) {
	dst := map[string]any{"a": "scalar"}
	for _, s := range []string{"/a/b", "/a/c", "/d", ""} {
		p, err := ParsePointer(s)
		if err != nil {
			t.Fatal(err)
		}
		p.Set(dst, s)
	}
	want := map[string]any{"a": map[string]any{"b": "/a/b", "c": "/a/c"}, "d": "/d"}
	if !reflect.DeepEqual(dst, want) {
		t.Fatalf("got %v, want %v", dst, want)
	}
}
