#!/usr/bin/env bash
# make demo: a throwaway PostgreSQL, a demo table changed by a small writer
# every second, changecast streaming every change through its built-in hub,
# and a live page (demo/demoapp) that shows the table as it changes.
# Ctrl-C stops it all.
#
#   DEMO_SECONDS=N     stop after N seconds (for scripted runs)
#   DEMO_HUB_PORT=P    changecast's hub port (default 8080)
#   DEMO_APP_PORT=P    the page's port (default 8081)
set -euo pipefail
cd "$(dirname "$0")/.."

hub_port=${DEMO_HUB_PORT:-8080}
app_port=${DEMO_APP_PORT:-8081}
for p in "$hub_port" "$app_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "demo: port $p on 127.0.0.1 is in use; choose others, e.g. DEMO_HUB_PORT=18080 DEMO_APP_PORT=18081 make demo" >&2
    exit 1
  fi
done

CHANGECAST_NO_BROWSER=1 scripts/setup.sh
go build -o bin/changecast ./cmd/changecast
go build -o bin/demoapp ./demo/demoapp

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

# The app and changecast share the secret of the users' tokens: the app
# signs them at login, changecast's negotiate verifies them.
CHANGECAST_DEMO_SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export CHANGECAST_DEMO_SECRET
export CHANGECAST_DEMO_HUB="127.0.0.1:$hub_port" CHANGECAST_DEMO_APP_PORT="$app_port"
export CHANGECAST_DEMO_HISTORY="$CHANGECAST_PG_DIR/changecast-history"

echo "demo: PostgreSQL on port $CHANGECAST_PG_PORT; table public.orders; a writer changes it every second" >&2
CHANGECAST_LOG=text bin/changecast run -c demo/demo.yaml &
pids+=($!)
bin/demoapp -listen "127.0.0.1:$app_port" -web web -negotiate "http://127.0.0.1:$hub_port/api" >/dev/null &
pids+=($!)

# Wait for both servers (at most 30 s).
for _ in $(seq 300); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$hub_port/api/health" 2>/dev/null &&
    curl -fsS -o /dev/null "http://127.0.0.1:$app_port/api/config" 2>/dev/null; then
    break
  fi
  for p in "${pids[@]}"; do
    kill -0 "$p" 2>/dev/null || { echo "demo: a server failed to start (see above)" >&2; exit 1; }
  done
  sleep 0.1
done

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

if [ -n "${DEMO_SECONDS:-}" ]; then
  sleep "$DEMO_SECONDS"
else
  wait "${pids[0]}"
fi
