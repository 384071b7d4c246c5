package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/changecast/changecast/schema/config"
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

// The example config at the repository's root is valid, and every value it
// writes out is the default it says it is: it parses to the same config as
// the minimal file holding only the required keys.
func TestExampleConfig(t *testing.T) {
	path := filepath.Join("..", "..", "changecast.example.yaml")
	t.Setenv("DATABASE_URL", "postgres://localhost/app")
	if code, out, errs := runCLI(t, "config", "validate", "-c", path); code != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("example config: code %d, out %q, err %q", code, out, errs)
	}
	example, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	minimal, err := config.Parse([]byte(`
source: {postgres: {url: "${DATABASE_URL}", tables: [public.orders]}}
mappings: [{collection: public.orders, hub: orders, group: "tenant-{/tenant}"}]
`), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(example, minimal) {
		t.Fatalf("the example's values are not the defaults:\nexample %+v\nminimal %+v", example, minimal)
	}
	t.Setenv("DATABASE_URL", "")
	code, _, errs := runCLI(t, "config", "validate", "-c", path)
	if code != 2 || !strings.Contains(errs, "source.postgres.url: ${DATABASE_URL} is not set") {
		t.Fatalf("without DATABASE_URL: code %d, err %q", code, errs)
	}
}

// config validate prints each shape problem on its own line with its path.
func TestConfigValidateShapeErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(`
source: {postgres: {url: "postgres://localhost/app", tables: [public.orders]}}
mappings:
  - colection: public.orders
    hub: orders
publish: {batch: {maxChanges: lots}}
server: {listen: nonsense}
`), 0o644)
	code, _, errs := runCLI(t, "config", "validate", "-c", bad)
	if code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	for _, want := range []string{
		bad + ": mappings[0].colection: unknown key (did you mean collection?)\n",
		bad + `: publish.batch.maxChanges: want an integer, got "lots"` + "\n",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr %q lacks %q", errs, want)
		}
	}
	if strings.Contains(errs, "config.Mapping") || strings.Contains(errs, "!!str") {
		t.Errorf("stderr speaks Go: %q", errs)
	}
}
