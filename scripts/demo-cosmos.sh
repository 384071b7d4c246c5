#!/usr/bin/env bash
# The Cosmos demo: `changecast emulate cosmos` (a local Cosmos DB gateway
# with a change feed, no Docker), a writer creating and updating orders
# through the Azure SDK, and changecast streaming every change to stdout with
# its leases in the emulator. Ctrl-C stops it all.
# Stdout carries the envelopes and nothing else (pipe it to jq); progress
# and logs go to stderr.
#
#   DEMO_SECONDS=N  stop after N seconds (for scripted runs)
#   COSMOS_PORT=P   the emulator's port (default 8091: 8081 is make demo's
#                   page and the Docker emulator's port)
set -euo pipefail
cd "$(dirname "$0")/.."

export COSMOS_PORT="${COSMOS_PORT:-8091}"
if (exec 3<>"/dev/tcp/127.0.0.1/$COSMOS_PORT") 2>/dev/null; then
  echo "demo: port $COSMOS_PORT on 127.0.0.1 is in use; choose another, e.g. COSMOS_PORT=18091 make demo-cosmos" >&2
  exit 1
fi
echo "demo: building changecast and the writer" >&2
go build -o bin/changecast ./cmd/changecast
go build -o bin/cosmoswriter ./demo/cosmoswriter

pids=()
cleanup() {
  # Stop in reverse order: changecast first, so it can checkpoint and
  # release its leases while the emulator still runs.
  for ((i=${#pids[@]}-1; i>=0; i--)); do
    kill "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 0' INT TERM

banner="$(mktemp)"
bin/changecast emulate cosmos --listen "127.0.0.1:$COSMOS_PORT" --partitions 4 --partition-key /tenant >"$banner" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  grep -q '^COSMOS_CONNECTION_STRING=' "$banner" && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$banner" >&2; exit 1; }
  sleep 0.1
done
export COSMOS_CONNECTION_STRING="$(sed -n 's/^COSMOS_CONNECTION_STRING=//p' "$banner")"
export COSMOS_KEY="$(sed -n 's/^key: //p' "$banner")"
rm -f "$banner"
[ -n "$COSMOS_KEY" ] || { echo "demo: the emulator did not start" >&2; exit 1; }

echo "demo: Cosmos DB emulator on http://127.0.0.1:$COSMOS_PORT/ (4 feed ranges); container app/orders" >&2
echo "demo: a writer creates and updates orders; changecast prints one envelope per line (stdout); logs go to stderr" >&2
echo "demo: try: curl -X POST 'http://127.0.0.1:$COSMOS_PORT/_admin/split?db=app&coll=orders&range=0'" >&2
echo "demo:      bin/changecast leases list -c demo/cosmos.yaml" >&2

bin/cosmoswriter &
pids+=($!)
CHANGECAST_LOG=text bin/changecast run -c demo/cosmos.yaml &
pids+=($!)

if [ -n "${DEMO_SECONDS:-}" ]; then
  sleep "$DEMO_SECONDS"
else
  wait "${pids[2]}"
fi
