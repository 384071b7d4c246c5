#!/usr/bin/env bash
# Runs every Go fuzz target of the module, one after the other, each for
# FUZZTIME (default 30s). The targets are found, not listed here: every
# func FuzzX in a _test.go file is run (`go test -list '^Fuzz'`).
#
#   FUZZTIME=2m scripts/fuzz.sh      # longer per target
#   FUZZ=Pgoutput scripts/fuzz.sh    # only targets whose name matches
#
# A failure does not stop the others. Go writes the failing input to
# <package>/testdata/fuzz/FuzzX/<hash>: fix the code, then commit that file.
# From then on it is part of the target's corpus, which `make test` (go test
# without -fuzz) runs every time, so the finding stays fixed.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME=${FUZZTIME:-30s}
FUZZ=${FUZZ:-.}
# One worker per core; minimizing a new input is capped so a large seed
# (a config file) does not eat a target's time.
PARALLEL=${FUZZ_PARALLEL:-$(nproc)}

# `go test -list` prints each package's matching names, then "ok <package>".
targets=()
names=()
while read -r first second _; do
	case "$first" in
	Fuzz*) names+=("$first") ;;
	ok)
		for n in "${names[@]}"; do
			if [[ $n =~ $FUZZ ]]; then targets+=("$second $n"); fi
		done
		names=()
		;;
	*) names=() ;;
	esac
done < <(go test -list '^Fuzz' ./... 2>/dev/null)

if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz: no target matches $FUZZ" >&2
	exit 1
fi
echo "fuzz: ${#targets[@]} targets, $FUZZTIME each"
failed=()
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "== $name ($pkg)"
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 10s -parallel "$PARALLEL" "$pkg"; then
		failed+=("$name ($pkg)")
	fi
done
if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: ${#failed[@]} failed: ${failed[*]}" >&2
	echo "fuzz: the failing inputs are under each package's testdata/fuzz/; fix, then commit them" >&2
	exit 1
fi
echo "fuzz: all ${#targets[@]} passed"
