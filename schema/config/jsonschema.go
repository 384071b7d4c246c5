package config

import (
	"encoding/json"

	"github.com/invopop/jsonschema"
)

// JSONSchema is the JSON Schema of the config file, for editors and
// `changecast config schema`.
func JSONSchema() ([]byte, error) {
	r := &jsonschema.Reflector{FieldNameTag: "yaml", DoNotReference: true, AllowAdditionalProperties: false, RequiredFromJSONSchemaTags: true}
	s := r.Reflect(&Config{})
	s.Title = "changecast configuration"
	return json.MarshalIndent(s, "", "  ")
}
