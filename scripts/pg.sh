#!/usr/bin/env bash
# Starts or stops a private PostgreSQL cluster with wal_level=logical for
# tests and the demo: initdb under a temp dir, a free port, run as the
# postgres user (the server refuses to run as root).
#
#   eval "$(scripts/pg.sh start)"   # exports CHANGECAST_PG_URL, CHANGECAST_PG_DIR, CHANGECAST_PG_PORT
#   scripts/pg.sh stop  "$CHANGECAST_PG_DIR"
#   scripts/pg.sh restart "$CHANGECAST_PG_DIR"   (used by tests that restart the server)
set -euo pipefail

find_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return; }
  done
  command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return; }
  return 1
}

ensure_bin() {
  if ! BIN=$(find_bin); then
    echo "pg.sh: PostgreSQL binaries missing; installing Debian's postgresql" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
    BIN=$(find_bin)
  fi
}

as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
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
  dir=$(mktemp -d /tmp/changecast-pg.XXXXXX)
  chmod 755 "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  port=$(free_port)
  as_pg "$BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  cat >>"$dir/data/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
fsync = off
synchronous_commit = off
full_page_writes = off
wal_sender_timeout = 60s
shared_buffers = 128MB
max_connections = 200
CONF
  as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
    || { cat "$dir/server.log" >&2; exit 1; }
  echo "$BIN" >"$dir/bin"
  echo "export CHANGECAST_PG_DIR=$dir CHANGECAST_PG_PORT=$port CHANGECAST_PG_URL='postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable'"
  ;;
stop)
  dir=${2:?usage: pg.sh stop DIR}
  [ -d "$dir" ] || exit 0
  BIN=$(cat "$dir/bin")
  as_pg "$BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
  ;;
restart)
  dir=${2:?usage: pg.sh restart DIR}
  BIN=$(cat "$dir/bin")
  as_pg "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
  as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
  ;;
*)
  echo "usage: pg.sh start | stop DIR | restart DIR" >&2
  exit 2
  ;;
esac
