#!/usr/bin/env bash
# make demo: a throwaway PostgreSQL, a demo table changed by a small writer
# every second, and changecast streaming every change. Ctrl-C stops it all.
# DEMO_SECONDS=N stops it after N seconds (for scripted runs).
set -euo pipefail
cd "$(dirname "$0")/.."

CHANGECAST_NO_BROWSER=1 scripts/setup.sh
eval "$(scripts/pg.sh start)"
export CHANGECAST_PG_URL
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  scripts/pg.sh stop "$CHANGECAST_PG_DIR"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

psql -q -v ON_ERROR_STOP=1 "$CHANGECAST_PG_URL" -f demo/schema.sql
go build -o bin/changecast ./cmd/changecast

echo "demo: PostgreSQL on port $CHANGECAST_PG_PORT; table public.orders; a writer changes it every second" >&2
echo "demo: changecast prints one envelope per line (stdout); logs go to stderr" >&2
CHANGECAST_LOG=text bin/changecast run -c demo/demo.yaml &
pids+=($!)

(
  while sleep 1; do
    psql -q -X "$CHANGECAST_PG_URL" -f demo/writer.sql >/dev/null 2>&1 || true
  done
) &
pids+=($!)

if [ -n "${DEMO_SECONDS:-}" ]; then
  sleep "$DEMO_SECONDS"
else
  wait "${pids[0]}"
fi
