// Package schema is changecast's public surface in data: the config file
// (Config, with Load, ApplyDefaults, Validate and a JSON Schema) and the wire
// envelope clients receive (Envelope, Change, CompareVersions).
//
// Load a file with Load(path): it interpolates ${VAR} and ${VAR:-default}
// in values, refuses unknown keys, applies the documented defaults and
// returns every problem as a *FieldError naming the field, e.g.
// `mappings[1].group: "{/tenant" has no closing brace`.
package schema
