#!/usr/bin/env bash
# Runs every test: installs what is missing, starts a private PostgreSQL
# cluster with wal_level=logical and a private Redis, runs go vet and go
# test, stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
eval "$(scripts/pg.sh start)"
trap 'scripts/pg.sh stop "$CHANGECAST_PG_DIR"' EXIT
echo "test: PostgreSQL on port $CHANGECAST_PG_PORT ($CHANGECAST_PG_DIR)"
eval "$(scripts/redis.sh start)"
trap 'scripts/pg.sh stop "$CHANGECAST_PG_DIR"; scripts/redis.sh stop "$CHANGECAST_REDIS_DIR"' EXIT
echo "test: Redis at $CHANGECAST_REDIS_URL ($CHANGECAST_REDIS_DIR)"

go vet ./...
# -p 2: the machines have 2 cores; packages still run in parallel.
go test -count=1 -p 2 -timeout 20m "$@" ./...
