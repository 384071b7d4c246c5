// Package inflight bounds the requests each caller of the read endpoints
// ({negotiate.path}/snapshot and /changes) has in flight at once: a reader
// that asks for many pages in parallel holds at most that many database
// connections and cores, so it cannot starve the other callers.
//
// Start from Limiter: one is shared by both endpoints, so the bound is on
// the caller's reads together.
package inflight
