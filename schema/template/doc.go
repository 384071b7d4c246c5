// Package template parses the name templates of the config file: Template
// ("tenant-{/tenant}", holes are JSON Pointers into a document: mapping
// groups and users) and Claims ("tenant-{claims.tid}", holes are token
// claims: negotiate group rules). Both share one lexer, so "{{" and "}}"
// escape braces the same way in both. Pointer is an RFC 6901 JSON Pointer.
package template
