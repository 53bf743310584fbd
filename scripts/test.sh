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
# The data is unpacked (mostly downloads) while the build runs.
phase scripts/setup.sh packages
mkdir -p data && scripts/setup.sh data > data/setup.log 2>&1 &
data_pid=$!
phase scripts/build.sh
if ! wait $data_pid; then cat data/setup.log >&2; echo "test.sh: scripts/setup.sh data failed" >&2; exit 1; fi
cat data/setup.log
echo "test.sh: data unpacked (total $SECONDS s)"
if [ "${1:-}" = "--quick" ]; then
  (cd build && ctest --output-on-failure -j1 -LE slow)
  exit 0
fi
phase ctest --test-dir build --output-on-failure -j1
phase scripts/sanitize.sh asan
phase scripts/sanitize.sh tsan
phase scripts/fuzz.sh 20
