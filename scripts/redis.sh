#!/usr/bin/env bash
# Starts or stops a private Redis for tests and benchmarks (the hub's
# backplane): Debian's redis-server, installed when missing, on a free
# loopback port, no persistence, data and logs in a temp dir. Never the
# machine's shared Redis.
#
#   eval "$(scripts/redis.sh start)"   # exports CHANGECAST_REDIS_URL, CHANGECAST_REDIS_DIR
#   scripts/redis.sh stop "$CHANGECAST_REDIS_DIR"
set -euo pipefail

ensure_bin() {
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "redis.sh: redis-server missing; installing Debian's redis-server" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >&2
  fi
}

free_port() {
  python3 - <<'PY' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket
s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()
PY
}

cmd=${1:-}
case "$cmd" in
start)
  ensure_bin
  dir=$(mktemp -d /tmp/changecast-redis.XXXXXX)
  port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
  for _ in $(seq 1 100); do
    if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
      echo "export CHANGECAST_REDIS_URL=redis://127.0.0.1:$port CHANGECAST_REDIS_DIR=$dir"
      exit 0
    fi
    sleep 0.1
  done
  cat "$dir/redis.log" >&2
  exit 1
  ;;
stop)
  dir=${2:?usage: redis.sh stop DIR}
  [ -d "$dir" ] || exit 0
  if [ -f "$dir/redis.pid" ]; then
    pid=$(cat "$dir/redis.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$dir"
  ;;
*)
  echo "usage: redis.sh start | stop DIR" >&2
  exit 2
  ;;
esac
