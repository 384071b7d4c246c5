#!/usr/bin/env bash
# Runs every benchmark (make bench): each prints a ratio against a reference
# measured in the same run on the same machine (machines here are shared;
# absolute figures are noise). 4–8 minutes on 2 cores, plus 2–6 minutes
# once to build Centrifugo into ~/.cache/changecast-bench.
#
# Knobs: BENCH_ROWS, BENCH_BACKLOG, BENCH_CLIENTS, BENCH_GROUPS,
# BENCH_FANOUT_CLIENTS (a list: "2000 10000"), BENCH_FANOUT_GROUPS, BENCH_FANOUT_RUNS, BENCH_COSMOS_DOCS,
# BENCH_BACKPLANE_CLIENTS, BENCH_SNAPSHOT_DOCS, BENCH_RESUME_CHANGES,
# BENCH_IDLE_CONNS (capped by ulimit -n).
set -euo pipefail
cd "$(dirname "$0")/.."
CHANGECAST_NO_BROWSER=1 scripts/setup.sh
start=$(date +%s)
echo "== $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(go version | cut -d' ' -f3)"

# Build once: the drivers start these as separate processes.
export CHANGECAST_BENCH_BIN
CHANGECAST_BENCH_BIN=$(mktemp -d /tmp/changecast-bench-bin.XXXXXX)
go build -o "$CHANGECAST_BENCH_BIN/" ./cmd/changecast ./bench/...
eval "$(scripts/pg.sh start)"
trap 'scripts/pg.sh stop "$CHANGECAST_PG_DIR"; rm -rf "$CHANGECAST_BENCH_BIN"' EXIT
eval "$(scripts/redis.sh start)"
trap 'scripts/pg.sh stop "$CHANGECAST_PG_DIR"; scripts/redis.sh stop "$CHANGECAST_REDIS_DIR"; rm -rf "$CHANGECAST_BENCH_BIN"' EXIT
B=$CHANGECAST_BENCH_BIN

echo "== PostgreSQL pipeline (to the in-process hub) vs pg_recvlogical, REPLICA IDENTITY FULL and DEFAULT"
"$B/pgthroughput" -rows "${BENCH_ROWS:-200000}"
echo "== Cosmos DB pipeline vs a bare azcosmos change-feed loop (changecast's emulator)"
"$B/cosmosthroughput" -docs "${BENCH_COSMOS_DOCS:-20000}"
echo "== Azure SignalR REST calls per change (REST publisher against the built-in hub)"
"$B/restcalls"
echo "== commit → client latency, out-of-process clients, vs Centrifugo $(grep -o 'Version = "[^"]*"' bench/internal/centrifugo/centrifugo.go | cut -d'"' -f2) in the same harness"
"$B/latency" -clients "${BENCH_CLIENTS:-1000}" -groups "${BENCH_GROUPS:-100}" -rate 1000
echo "== the part of that latency before the hub: commit → the hub's publish call, in process"
"$B/latprobe" -rate 1000
echo "== fan-out: the built-in hub vs the Centrifugo server, over their HTTP APIs (2,000 and 10,000 clients; 20,000 deliveries/s at the fixed rate)"
for n in ${BENCH_FANOUT_CLIENTS:-2000 10000}; do
  g=${BENCH_FANOUT_GROUPS:-50}
  (cd bench/fanout && go run . -clients "$n" -groups "$g" -rate $((20000 * g / n)) -runs "${BENCH_FANOUT_RUNS:-2}")
done
echo "== idle connections: the built-in hub's RSS per idle WebSocket connection vs Centrifugo's (target ≤ 16 KB)"
"$B/idle" -conns "${BENCH_IDLE_CONNS:-19000}"
echo "== hub backplane: fan-out through 3 nodes joined by Redis vs 1, and the latency Redis adds"
"$B/backplane" -clients "${BENCH_BACKPLANE_CLIENTS:-5000}" -messages 50
echo "== a client's first load: a 10k-document group by GET /snapshot vs a bare SELECT of the rows as JSON"
"$B/snapshot" -docs "${BENCH_SNAPSHOT_DOCS:-10000}"
echo "== a reconnecting client: catch-up of 10k missed changes by GET /changes vs a snapshot reload; 100 clients at once"
"$B/resume" -changes "${BENCH_RESUME_CHANGES:-10000}"
echo "== memory with the target down and a 1M-change backlog"
"$B/backlog" -rows "${BENCH_BACKLOG:-1000000}"
echo "== done in $(( $(date +%s) - start )) s"
