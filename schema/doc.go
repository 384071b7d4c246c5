// Package schema is changecast's public surface in data, one package per
// job; this package itself holds only this guide.
//
//   - schema/config: the config file (Config, Load, ApplyDefaults, Validate,
//     the JSON Schema behind `changecast config schema`). Only the worker
//     assembly reads it; library packages take their own option structs.
//   - schema/wire: what clients receive (Envelope, Entry, the op names,
//     CompareVersions) and the JSON encoders the hot path uses to write it.
//   - schema/template: JSON Pointers and the name templates of mappings
//     ("tenant-{/tenant}") and negotiate rules ("tenant-{claims.tid}"),
//     which share one lexer.
package schema
