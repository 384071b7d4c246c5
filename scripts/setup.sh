#!/usr/bin/env bash
# Installs what the tests and the demo need, when it is missing: PostgreSQL
# binaries (for the private cluster), Chromium (browser tests), Java 17 and
# Maven (the SignalR Java client's test, test/java), the npm packages of the
# Node tests, and the Maven dependencies of test/java (in ~/.m2). Idempotent;
# safe to run on every `make test`.
#
# CHANGECAST_SETUP=demo installs only what `make demo` needs: PostgreSQL
# binaries and the npm packages of clients/js and web (no Chromium, Java,
# Maven or test packages).
set -euo pipefail
cd "$(dirname "$0")/.."
demo=0
[ "${CHANGECAST_SETUP:-}" = demo ] && demo=1

need_apt=()
have_pg=0
for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && have_pg=1; done
command -v initdb >/dev/null 2>&1 && have_pg=1
[ "$have_pg" = 1 ] || need_apt+=(postgresql)
if [ "$demo" = 0 ]; then
  if [ "${CHANGECAST_NO_BROWSER:-}" = "" ] && ! [ -x /usr/bin/chromium ]; then
    need_apt+=(chromium)
  fi
  command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
  command -v javac >/dev/null 2>&1 || need_apt+=(openjdk-17-jdk-headless)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} with apt-get" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >&2
fi

# clients/js first: web depends on it by path ("file:../clients/js", a link
# in web/node_modules), and Node resolves the package's own dependencies
# (fast-json-patch) from clients/js/node_modules, which only npm ci there
# installs.
npm_dirs=(clients/js test/node web)
[ "$demo" = 1 ] && npm_dirs=(clients/js web)
for dir in "${npm_dirs[@]}"; do
  if [ -f "$dir/package.json" ]; then
    if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
      echo "setup: npm ci in $dir" >&2
      (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
      touch "$dir/node_modules"
    fi
  fi
done

[ "$demo" = 1 ] && exit 0

# test/java: the first build downloads the Java client and the plugins into
# ~/.m2 (about 75 s on these machines); later ones run offline.
if [ ! -d test/java/target/lib ] || [ test/java/pom.xml -nt test/java/target/lib ]; then
  echo "setup: mvn package in test/java (the first time downloads its dependencies into ~/.m2)" >&2
  start=$(date +%s)
  rm -rf test/java/target/lib # copy-dependencies adds; a jar the pom dropped must go
  mvn -q -B -f test/java/pom.xml package >&2
  touch test/java/target/lib
  echo "setup: test/java built in $(( $(date +%s) - start )) s" >&2
fi
