#!/usr/bin/env bash
# Configures (once) and builds distbelief into build/ with Ninja (ccache when present).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build build -- -j"$(nproc)" --quiet 2>/dev/null || cmake --build build -- -j"$(nproc)"
