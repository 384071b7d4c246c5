package testkit

import (
	"bytes"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// JSONSchema compiles the JSON Schema raw (what `changecast config schema`
// or `changecast envelope schema` prints) and returns it, and after it
// the subschemas at each JSON Pointer of at ("/properties/hub").
func JSONSchema(t testing.TB, raw []byte, at ...string) []*jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	var out []*jsonschema.Schema
	for _, p := range append([]string{""}, at...) {
		s, err := c.Compile("schema.json#" + p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}
