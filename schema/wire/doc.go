// Package wire is the contract clients receive: every hub invocation has
// one argument, an Envelope (a batch of Entries for one hub and one group,
// user, or the whole hub). Field names never change; EnvelopeJSONSchema
// documents them.
//
// Versions are strings of dot-separated integers compared with
// CompareVersions (64-bit LSNs do not fit a JavaScript number). Entry's
// AppendJSON and AppendValue encode changes and documents on the hot path
// byte for byte as encoding/json would, without its reflection; every
// document that reaches a client, live or in a snapshot, goes through them.
// FormatID renders a document id from its key values.
package wire
