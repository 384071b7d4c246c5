// Package testkit is what changecast's tests share: one polling helper
// (Eventually), one run-in-background helper (Go), and the real services
// the integration tests talk to (Postgres for a private PostgreSQL cluster
// with wal_level=logical and throwaway databases on it).
//
// Integration tests call Postgres (or NeedPostgres) first: under
// `go test -short` they are skipped with a message saying what they need,
// so the short pass runs with no service at all; `make test` starts the
// cluster and exports CHANGECAST_PG_URL.
package testkit
