package config_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/changecast/changecast/internal/testkit"
	"github.com/changecast/changecast/schema/config"
)

// compileSchema compiles `changecast config schema` (config.JSONSchema),
// and the hub section of it at #/properties/hub (the file of
// `changecast hub -hub-config`).
func compileSchema(t *testing.T) (whole, hub *jsonschema.Schema) {
	t.Helper()
	raw, err := config.JSONSchema()
	if err != nil {
		t.Fatal(err)
	}
	s := testkit.JSONSchema(t, raw, "/properties/hub")
	return s[0], s[1]
}

// yamlValue reads YAML as the JSON value the schema validates.
func yamlValue(t *testing.T, name string, src []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(src, &v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	out, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The config JSON Schema accepts the repository's real configs: the demos,
// the deployment examples, and every YAML example of the README and the
// Cosmos DB guide (each a config, or part of one); and it refuses configs
// with a misspelt key, a wrong type or an unknown enum value.
func TestConfigSchemaValidatesRealConfigs(t *testing.T) {
	whole, hub := compileSchema(t)
	root := testkit.Root(t)
	configs := map[string][]byte{}
	for _, pattern := range []string{"demo/*.yaml", "deploy/kubernetes/config/worker.yaml"} {
		files, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no files (%v)", pattern, err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			configs[strings.TrimPrefix(f, root+"/")] = b
		}
	}
	block := regexp.MustCompile("(?s)```yaml\n(.*?)```")
	for _, doc := range []string{"README.md", "docs/cosmos.md"} {
		b, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			t.Fatal(err)
		}
		blocks := block.FindAllSubmatch(b, -1)
		if len(blocks) == 0 {
			t.Fatalf("%s has no yaml examples", doc)
		}
		for i, m := range blocks {
			configs[doc+" example "+string(rune('1'+i))] = m[1]
		}
	}
	if len(configs) < 9 {
		t.Fatalf("found %d configs to check, want the demos', the deployment's and the docs' examples", len(configs))
	}
	// A fragment (a section of a config) is checked inside the README's
	// first example, the whole config it extends.
	base := yamlValue(t, "README.md example 1", configs["README.md example 1"]).(map[string]any)
	for name, src := range configs {
		v := yamlValue(t, name, src)
		if m, ok := v.(map[string]any); ok && (m["source"] == nil || m["mappings"] == nil) {
			for k, bv := range base {
				if _, set := m[k]; !set {
					m[k] = bv
				}
			}
		}
		if err := whole.Validate(v); err != nil {
			t.Errorf("%s does not validate against `changecast config schema`:\n%v", name, err)
		}
	}
	hubFile, err := os.ReadFile(filepath.Join(root, "deploy/kubernetes/config/hub.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := hub.Validate(yamlValue(t, "hub.yaml", hubFile)); err != nil {
		t.Errorf("deploy/kubernetes/config/hub.yaml does not validate against the hub section of the schema:\n%v", err)
	}

	// Wrong configs: the README's first example with one mistake each.
	for name, src := range map[string]string{
		"a misspelt key":        "publsh: {target: stdout}",
		"a misspelt nested key": "server: {listn: 127.0.0.1:9090}",
		"a wrong type":          "mappings: {collection: public.a, hub: h}",
		"an unknown target":     "publish: {target: kafka}",
		"a string for a number": "publish: {batch: {maxChanges: many}}",
	} {
		v := yamlValue(t, name, configs["README.md example 1"]).(map[string]any)
		for k, bad := range yamlValue(t, name, []byte(src)).(map[string]any) {
			v[k] = bad
		}
		if err := whole.Validate(v); err == nil {
			t.Errorf("the schema accepts a config with %s: %s", name, src)
		}
	}
}
