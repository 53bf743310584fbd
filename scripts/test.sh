#!/usr/bin/env bash
# Installs, builds and runs every test. With --quick the tests labelled "slow" are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
args=()
if [ "${1:-}" = "--quick" ]; then args=(-LE slow); fi
cd build && ctest --output-on-failure -j1 "${args[@]}"
