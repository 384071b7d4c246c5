# changecast — the two set-up commands are `make demo` and `make test`.
GO ?= go

.PHONY: test demo demo-cosmos build bench chaos clean

# Runs every test (installs what is missing, starts a private PostgreSQL).
test:
	scripts/test.sh

# Runs the main job on the embedded default: a throwaway PostgreSQL, a demo
# table with a writer, and changecast streaming it.
# Its progress and the page's address go to stderr; `@` keeps make from
# echoing the command to stdout.
demo:
	@scripts/demo.sh

build:
	$(GO) build -o bin/changecast ./cmd/changecast

clean:
	rm -rf bin

# Benchmarks: each prints a ratio against a reference measured in the same run.
bench:
	scripts/bench.sh

# The Cosmos DB variant of the demo: `changecast emulate cosmos` (on
# COSMOS_PORT, default 8091), a writer, and changecast streaming the
# container. Stdout carries only envelopes (`@`: make echoes nothing).
demo-cosmos:
	@scripts/demo-cosmos.sh

# The chaos proof (issue 10): workers killed, PostgreSQL restarted, clients
# dropped while a writer runs; every replica must end exact (lost = 0).
# About 4.5 minutes; CHAOS_SECONDS, CHAOS_SEED and CHAOS_LOGS tune it.
chaos:
	scripts/chaos.sh
