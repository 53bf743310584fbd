#!/usr/bin/env bash
# The main job: install, build, then train the MNIST MLP and print its test accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
exec build/tools/distbelief train --config configs/mnist_mlp.toml "$@"
