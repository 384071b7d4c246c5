// Package config is the changecast config file: its types (Config and its
// sections), the documented defaults (ApplyDefaults), the checks
// (Validate, every problem a *FieldError naming its field) and its JSON
// Schema (JSONSchema).
//
// Start with Load(path): it interpolates ${VAR} and ${VAR:-default} in
// values, refuses unknown keys, applies the defaults and validates, e.g.
// `mappings[1].group: "{/tenant" has no closing brace`. DecodeHub reads a
// file holding only a hub section (`changecast hub --hub-config`), to which
// the command line adds before Hub.ApplyDefaults and Hub.Validate.
//
// Library packages never import this package: the worker assembly
// translates a Config into their option structs.
package config
