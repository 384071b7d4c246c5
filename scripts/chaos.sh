#!/usr/bin/env bash
# make chaos: issue 10's chaos proof, bounded (about 4.5 minutes in all).
# Installs what is missing, starts a private PostgreSQL (the Cosmos run's
# shadow store; the PostgreSQL run starts and restarts a cluster of its
# own) and a private Redis (the workers' history), then runs test/chaos
# for CHAOS_SECONDS (default 240): real `changecast run` workers killed
# with SIGKILL and restarted, a PostgreSQL restart (or a Cosmos split), 20
# Node clients dropping their connections, some for longer than the history
# keeps. It prints the counters of every client and the totals, and fails
# when a replica differs from the source (lost ≠ 0).
#
#   CHAOS_SECONDS=60 make chaos      # shorter
#   CHAOS_SEED=123 make chaos        # repeat a run's writer and schedule
#   CHAOS_LOGS=/tmp/chaos make chaos # keep the processes' logs
set -euo pipefail
cd "$(dirname "$0")/.."

# Chromium is for the browser tests only.
CHANGECAST_NO_BROWSER=1 scripts/setup.sh
eval "$(scripts/pg.sh start)"
trap 'scripts/pg.sh stop "$CHANGECAST_PG_DIR"' EXIT
eval "$(scripts/redis.sh start)"
trap 'scripts/pg.sh stop "$CHANGECAST_PG_DIR"; scripts/redis.sh stop "$CHANGECAST_REDIS_DIR"' EXIT
export CHAOS_SECONDS="${CHAOS_SECONDS:-240}"
echo "chaos: ${CHAOS_SECONDS}s; PostgreSQL on port $CHANGECAST_PG_PORT, Redis at $CHANGECAST_REDIS_URL" >&2

log=$(mktemp)
trap 'rm -f "$log"; scripts/pg.sh stop "$CHANGECAST_PG_DIR"; scripts/redis.sh stop "$CHANGECAST_REDIS_DIR"' EXIT
status=0
# The two runs go side by side (t.Parallel): the PostgreSQL one and the
# Cosmos DB one (which skips while Cosmos snapshots are not served).
go test -count=1 -v -timeout "$((CHAOS_SECONDS + 60))s" -run '^TestChaos' ./test/chaos 2>&1 | tee "$log" || status=$?

echo
echo "=== chaos summary"
grep -E 'chaos: [0-9]+ clients|schedule:|writer:|seed [0-9]+|--- (PASS|FAIL|SKIP)|skipped: |lost = ' "$log" | sed 's/^ *//' || true
exit "$status"
