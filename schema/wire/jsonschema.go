package wire

import (
	"encoding/json"

	"github.com/invopop/jsonschema"
)

// EnvelopeJSONSchema is the JSON Schema of the batch envelope clients
// receive.
func EnvelopeJSONSchema() ([]byte, error) {
	r := &jsonschema.Reflector{DoNotReference: true, RequiredFromJSONSchemaTags: true}
	s := r.Reflect(&Envelope{})
	s.Title = "changecast batch envelope"
	return json.MarshalIndent(s, "", "  ")
}
