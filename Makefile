# changecast — the two set-up commands are `make demo` and `make test`.
GO ?= go

.PHONY: test demo demo-cosmos build bench chaos clean fuzz

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

# Every Go fuzz target (func FuzzX, found by the script), FUZZTIME each
# (default 30s; about 20 minutes for the 29 targets of today on 2 busy
# cores, a build included per target); FUZZ=regexp picks some. A failing
# input lands in the package's testdata/fuzz/: fix, commit it, and
# `make test` replays it from then on.
fuzz:
	scripts/fuzz.sh
