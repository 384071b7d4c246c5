package schema

import (
	"encoding/json"

	"github.com/invopop/jsonschema"
)

// ConfigJSONSchema is the JSON Schema of the config file, for editors and
// `changecast config schema`.
func ConfigJSONSchema() ([]byte, error) {
	r := &jsonschema.Reflector{FieldNameTag: "yaml", DoNotReference: true, AllowAdditionalProperties: false, RequiredFromJSONSchemaTags: true}
	s := r.Reflect(&Config{})
	s.Title = "changecast configuration"
	return json.MarshalIndent(s, "", "  ")
}

// EnvelopeJSONSchema is the JSON Schema of the batch envelope clients
// receive.
func EnvelopeJSONSchema() ([]byte, error) {
	r := &jsonschema.Reflector{DoNotReference: true, RequiredFromJSONSchemaTags: true}
	s := r.Reflect(&Envelope{})
	s.Title = "changecast batch envelope"
	return json.MarshalIndent(s, "", "  ")
}
