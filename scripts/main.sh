#!/usr/bin/env bash
# The main job: install, build, then train the cat network (Le et al. 2012) with Downpour on the
# in-process parameter server, and print the report's path and the best neuron's accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
exec build/tools/distbelief train --config configs/cat.toml "$@"
