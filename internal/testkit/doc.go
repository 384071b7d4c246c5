// Package testkit is what changecast's tests share, so that every package
// waits, runs things in the background and reaches real services the same
// way:
//
//   - waiting for a state instead of sleeping: Eventually (cond says what is
//     still missing), Until (a plain condition), Recv (one value from a
//     channel);
//   - owning background work: Go (a function, joined when the test ends) and
//     Run (a component with a blocking Run(ctx) error: cancelled, joined and
//     checked when the test ends, or earlier through the stop it returns);
//   - real services, for integration tests: Postgres (the private cluster
//     of `make test`), Database (a throwaway database on it; DatabaseOn for
//     a cluster of the test's own), Connect, Exec and Pool; Redis (the
//     private redis-server of `make test`) with RedisPrefix (keys and
//     channels of the test's own); NeedNode (Node.js with the npm packages
//     scripts/setup.sh installs) and NeedChromium; Root, the repository's
//     folder;
//   - fuzz targets' properties: Allocated and BoundedAlloc (a parser's
//     allocation against its input's size).
//
// Every integration test calls one of Postgres, Database, Redis, NeedNode,
// NeedChromium or Integration first. Under `go test -short` they skip the
// test with a message saying what it needs, so the short pass runs with no
// service at all. Without -short a missing service fails the test with the
// command that provides it: `make test` (scripts/test.sh) installs the npm
// packages and Chromium, starts the cluster and Redis and exports
// CHANGECAST_PG_URL and CHANGECAST_REDIS_URL,
// so a full run cannot pass without running every test.
//
// Code that runs on timers in process (expiries, TTLs) is better tested
// inside a testing/synctest bubble, where time.Sleep advances a fake clock
// at once; see publish/hub's TestUserGroupTTL. The bubble cannot hold real
// sockets, so serve such code through its http.Handler there.
package testkit
