#!/usr/bin/env bash
# Installs, builds and runs every test, then the tests again under the sanitizers
# (scripts/sanitize.sh), then 60 s of libFuzzer on each parser of outside input (scripts/fuzz.sh).
# With --quick: only the build's tests, without those labelled "slow".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
if [ "${1:-}" = "--quick" ]; then
  (cd build && ctest --output-on-failure -j1 -LE slow)
  exit 0
fi
(cd build && ctest --output-on-failure -j1)
scripts/sanitize.sh
scripts/fuzz.sh 60
