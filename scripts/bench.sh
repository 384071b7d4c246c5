#!/usr/bin/env bash
# Runs the benchmarks against a private PostgreSQL and Redis; each prints a ratio
# against a reference measured in the same run (machines here are shared).
set -euo pipefail
cd "$(dirname "$0")/.."
CHANGECAST_NO_BROWSER=1 scripts/setup.sh
eval "$(scripts/pg.sh start)"
trap 'scripts/pg.sh stop "$CHANGECAST_PG_DIR"' EXIT
eval "$(scripts/redis.sh start)"
trap 'scripts/pg.sh stop "$CHANGECAST_PG_DIR"; scripts/redis.sh stop "$CHANGECAST_REDIS_DIR"' EXIT
echo "== PostgreSQL pipeline vs pg_recvlogical"
go run ./bench/pgthroughput -rows "${BENCH_ROWS:-200000}"
echo "== memory with the target down and a 1M-change backlog"
go run ./bench/backlog -rows "${BENCH_BACKLOG:-1000000}"
echo "== Azure SignalR REST calls per change (REST publisher against the built-in hub)"
go run ./bench/restcalls
echo "== end-to-end latency, commit to WebSocket clients of the built-in hub"
go run ./bench/latency -clients "${BENCH_CLIENTS:-1000}" -rate 1000
echo "== built-in hub fan-out vs Centrifugo's engine (centrifuge), 5k WebSocket clients"
(cd bench/fanout && go run . -clients "${BENCH_FANOUT_CLIENTS:-5000}" -messages 100)
echo "== hub backplane: fan-out through 3 nodes vs 1, and the latency Redis adds"
go run ./bench/backplane -clients "${BENCH_BACKPLANE_CLIENTS:-5000}" -messages 50
