#!/usr/bin/env bash
# Installs, builds and runs every test, then the tests again under the sanitizers
# (scripts/sanitize.sh), then 20 s of libFuzzer on each parser of outside input, one per core (scripts/fuzz.sh;
# every crash found so far is in the seed corpora, so each run replays them all).
# With --quick: only the build's tests, without those labelled "slow".
set -euo pipefail
cd "$(dirname "$0")/.."
phase() {  # prints how long each phase took (CI must finish in 45 minutes on 2 cores)
  local start=$SECONDS
  "$@"
  echo "test.sh: '$*' took $((SECONDS - start)) s (total $SECONDS s)"
}
phase scripts/setup.sh build  # packages, then the data unpacked while the build runs
if [ "${1:-}" = "--quick" ]; then
  (cd build && ctest --output-on-failure -j1 -LE slow)
  exit 0
fi
phase ctest --test-dir build --output-on-failure -j1
phase scripts/sanitize.sh asan
phase scripts/sanitize.sh tsan
phase scripts/fuzz.sh 20
