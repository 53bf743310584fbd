#!/usr/bin/env bash
# The main job: install, build, then train the cat network (Le et al. 2012) with Downpour on the
# in-process parameter server, then run the face test and print its table and the report's path.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh packages
mkdir -p data && scripts/setup.sh data > data/setup.log 2>&1 &  # downloads, while the build runs
data_pid=$!
scripts/build.sh
if ! wait $data_pid; then cat data/setup.log >&2; echo "main.sh: scripts/setup.sh data failed" >&2; exit 1; fi
cat data/setup.log
exec build/tools/distbelief train --config configs/cat.toml "$@"
