#!/usr/bin/env bash
# fuzz-smoke.sh: run every fuzz target of the module for a bounded time
# (FUZZTIME, default 10s each) so that CI exercises the parsers of outside
# input: the request parser, the registry loader, the sealed-envelope opener,
# the POST body, the API's query parameters, the configuration and others.
# Targets are found by name (func FuzzXxx in *_test.go); a new target is run
# without editing this script. Their seed corpora (f.Add and
# testdata/fuzz/<Name>/) run in the ordinary `go test` too.
#
#   scripts/fuzz-smoke.sh            # every target, 10s each
#   FUZZTIME=60s scripts/fuzz-smoke.sh ./agreements/...
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
PARALLEL=${FUZZ_PARALLEL:-2}
dirs=("$@")
if [ ${#dirs[@]} -eq 0 ]; then dirs=(.); fi

failed=0
ran=0
while IFS=: read -r file name; do
  pkg="./$(dirname "${file#./}")"
  ran=$((ran + 1))
  start=$(date +%s)
  fuzz() { "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -parallel "$PARALLEL" "$pkg" 2>&1; }
  out=$(fuzz) && status=0 || status=$?
  # The fuzzing engine sometimes ends a time-bounded run with its own
  # "context deadline exceeded" although no input failed; a real finding
  # always writes "Failing input written to ...". Such a run is tried once
  # more; a second failure counts.
  if [ $status -ne 0 ] && ! grep -q 'Failing input written' <<<"$out" && grep -q 'context deadline exceeded' <<<"$out"; then
    echo "note $pkg $name: the fuzzing engine's deadline error without a failing input; running it again"
    out=$(fuzz) && status=0 || status=$?
  fi
  if [ $status -eq 0 ]; then
    echo "ok   $pkg $name ($(( $(date +%s) - start ))s)"
  else
    failed=$((failed + 1))
    echo "FAIL $pkg $name"
    echo "$out" | tail -30
  fi
done < <(grep -rHoE --include='*_test.go' '^func (Fuzz[A-Za-z0-9_]+)\(' "${dirs[@]}" \
          | grep -v '/vendor/' | sed -E 's/:func (Fuzz[A-Za-z0-9_]+)\(/:\1/' | sort -u)

echo "fuzz-smoke: $ran targets, $failed failed ($FUZZTIME each)"
[ "$ran" -gt 0 ] && [ "$failed" -eq 0 ]
