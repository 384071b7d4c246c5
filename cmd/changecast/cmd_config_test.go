package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(`
source: {postgres: {url: "postgres://localhost/app", tables: [public.orders]}}
mappings: [{collection: public.orders, hub: orders, group: "tenant-{/tenant}"}]
`), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`
source: {postgres: {url: "postgres://localhost/app", tables: [public.orders]}}
mappings:
  - {collection: public.orders, hub: orders}
  - {collection: public.orders, hub: orders, group: "{/tenant"}
publish: {target: nowhere}
`), 0o644)

	if code, out, errs := runCLI(t, "config", "validate", "-c", good); code != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("good config: code %d, out %q, err %q", code, out, errs)
	}
	code, _, errs := runCLI(t, "config", "validate", "-c", bad)
	if code != 2 {
		t.Fatalf("bad config: exit %d, want 2", code)
	}
	for _, want := range []string{`mappings[1].group: "{/tenant" has no closing brace`, `publish.target: "nowhere"`} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr %q lacks %q", errs, want)
		}
	}
	if code, _, errs := runCLI(t, "config", "validate", "-c", filepath.Join(dir, "missing.yaml")); code != 2 || !strings.Contains(errs, "missing.yaml") {
		t.Fatalf("missing file: code %d, err %q", code, errs)
	}
	// run refuses a bad file with the same exit code, before connecting anywhere.
	if code, _, _ := runCLI(t, "run", "-c", bad); code != 2 {
		t.Fatalf("run with a bad config: exit %d, want 2", code)
	}
}

func TestSchemas(t *testing.T) {
	for _, args := range [][]string{{"config", "schema"}, {"envelope", "schema"}} {
		code, out, errs := runCLI(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
		var s map[string]any
		if err := json.Unmarshal([]byte(out), &s); err != nil || s["properties"] == nil {
			t.Fatalf("%v: not a JSON Schema: %v", args, err)
		}
	}
}
