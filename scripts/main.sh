#!/usr/bin/env bash
# The main job: install, build, then train the cat network (Le et al. 2012) with Downpour on the
# in-process parameter server, then run the face test and print its table and the report's path.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build  # packages, then the data unpacked while the build runs
exec build/tools/distbelief train --config configs/cat.toml "$@"
