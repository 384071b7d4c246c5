#!/usr/bin/env bash
# make demo: a throwaway PostgreSQL, a demo table changed by a small writer
# every second, changecast streaming every change through its built-in hub,
# and a live page (demo/demoapp) that shows the table as it changes.
# Ctrl-C stops it all. Progress goes to stderr, one line per step, and the
# page's address as soon as the page works; stdout stays empty.
#
#   DEMO_SECONDS=N         stop after N seconds (for scripted runs)
#   DEMO_HUB_PORT=P        changecast's hub port (default 8080)
#   DEMO_APP_PORT=P        the page's port (default 8081)
#   DEMO_OPS_PORT=P        changecast's /readyz and /metrics (default 8082)
#   DEMO_REPORT_SECONDS=N  how often "published N changes" is printed (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { echo "demo: $*" >&2; }

hub_port=${DEMO_HUB_PORT:-8080}
app_port=${DEMO_APP_PORT:-8081}
ops_port=${DEMO_OPS_PORT:-8082}
report=${DEMO_REPORT_SECONDS:-10}
for p in "$hub_port" "$app_port" "$ops_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "demo: port $p on 127.0.0.1 is in use; choose others, e.g. DEMO_HUB_PORT=18080 DEMO_APP_PORT=18081 DEMO_OPS_PORT=18082 make demo" >&2
    exit 1
  fi
done

step "installing what is missing (PostgreSQL binaries; npm packages of clients/js and web)"
CHANGECAST_SETUP=demo scripts/setup.sh
step "building changecast and the demo app"
go build -o bin/changecast ./cmd/changecast
go build -o bin/demoapp ./demo/demoapp

step "starting a private PostgreSQL"
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

step "PostgreSQL on port $CHANGECAST_PG_PORT; creating public.orders with rows of two tenants"
psql -q -v ON_ERROR_STOP=1 "$CHANGECAST_PG_URL" -f demo/schema.sql

# The app and changecast share the secret of the users' tokens: the app
# signs them at login, changecast's negotiate verifies them.
CHANGECAST_DEMO_SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export CHANGECAST_DEMO_SECRET
export CHANGECAST_DEMO_HUB="127.0.0.1:$hub_port" CHANGECAST_DEMO_APP_PORT="$app_port"
export CHANGECAST_DEMO_SERVER="127.0.0.1:$ops_port"
export CHANGECAST_DEMO_HISTORY="$CHANGECAST_PG_DIR/changecast-history"

step "starting changecast (hub on 127.0.0.1:$hub_port) and the demo app (127.0.0.1:$app_port)"
CHANGECAST_LOG=text bin/changecast run -c demo/demo.yaml &
pids+=($!)
bin/demoapp -listen "127.0.0.1:$app_port" -web web -negotiate "http://127.0.0.1:$hub_port/api" >/dev/null &
pids+=($!)

# The page works once the app serves it and changecast streams (/readyz:
# the slot is being read, the hub serves negotiate and snapshots). Poll
# both every 100 ms; give up after 60 s, or at once if a server exits.
ready=0
for _ in $(seq 600); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$app_port/api/config" 2>/dev/null &&
    curl -fsS -o /dev/null "http://127.0.0.1:$ops_port/readyz" 2>/dev/null; then
    ready=1
    break
  fi
  for p in "${pids[@]}"; do
    kill -0 "$p" 2>/dev/null || { echo "demo: a server failed to start (see above)" >&2; exit 1; }
  done
  sleep 0.1
done
[ "$ready" = 1 ] || { echo "demo: changecast is not ready after 60 s (see its log above)" >&2; exit 1; }

(
  while sleep 1; do
    psql -q -X "$CHANGECAST_PG_URL" -f demo/writer.sql >/dev/null 2>&1 || true
  done
) &
pids+=($!)

cat >&2 <<EOF

demo: open the live page:  http://127.0.0.1:$app_port/            (tenant acme)
                           http://127.0.0.1:$app_port/?tenant=globex
demo: changecast's hub:    http://127.0.0.1:$hub_port  (app negotiate at /api/negotiate)
demo: Ctrl-C stops everything.

EOF

# published is changecast's count of changes the hub accepted.
published() {
  curl -fsS "http://127.0.0.1:$ops_port/metrics" 2>/dev/null |
    awk '/^changecast_changes_published_total/ {n += $NF} END {printf "%d", n}'
}
started=$SECONDS
last=$SECONDS
while [ -z "${DEMO_SECONDS:-}" ] || [ $((SECONDS - started)) -lt "$DEMO_SECONDS" ]; do
  sleep 1
  kill -0 "${pids[0]}" 2>/dev/null || { echo "demo: changecast stopped (see its log above)" >&2; exit 1; }
  if [ $((SECONDS - last)) -ge "$report" ]; then
    last=$SECONDS
    step "published $(published) changes"
  fi
done
