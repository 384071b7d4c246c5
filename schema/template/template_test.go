package template

import (
	"encoding/json"
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
