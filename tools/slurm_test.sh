#!/usr/bin/env bash
# A real Slurm cluster on this machine (scripts/slurm_cluster.sh: munged, slurmctld, slurmd) and
# `sbatch` of examples/slurm/downpour.sbatch, the script docs/distributed.md shows: 2 shards and
# 3 replicas as job steps over gRPC with a secret, then `collect`. Checks the job's result, that
# the shards checkpointed when stopped, and that no process of the job outlives it.
# Needs root (it starts the daemons); exits 77 (skipped) without it or without Slurm installed.
# Usage: slurm_test.sh PATH/TO/distbelief (from the repository root).
set -u
bin=$(readlink -f "$1")
if [ "$(id -u)" != 0 ] || ! command -v slurmctld >/dev/null; then
  echo "skipped: needs root and slurm-wlm + munge (scripts/setup.sh installs them)"
  exit 77
fi
tmp=$(mktemp -d)
started=0
cleanup() {
  [ $started = 1 ] && scripts/slurm_cluster.sh stop
  pkill -9 -f "$tmp" 2>/dev/null
  [ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $1"; [ -n "${2:-}" ] && tail -20 "$2"; exit 1; }

# The Slurm example in docs/distributed.md is this very script.
python3 - <<'PY' || fail "docs/distributed.md's Slurm example differs from examples/slurm/downpour.sbatch"
import sys
doc = open("docs/distributed.md").read()
block = doc.split("### Slurm", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
sys.exit(block != open("examples/slurm/downpour.sbatch").read())
PY

pgrep -x slurmctld >/dev/null || { scripts/slurm_cluster.sh start || fail "the cluster did not start"; started=1; }

out=$tmp/job.out
DISTBELIEF=$bin RUN_DIR=$tmp/run SHARDS=2 REPLICAS=3 \
SETS='train.epochs=2;model.hidden=[256];train.train_limit=12000;train.batch_size=64;distributed.warmstart_steps=0;distributed.shard_checkpoint_every=1000000' \
  timeout 300 sbatch --wait --time=5 -o "$out" examples/slurm/downpour.sbatch >"$tmp/sbatch.txt" 2>&1
status=$?
job=$(awk '/Submitted batch job/ {print $4}' "$tmp/sbatch.txt")
[ $status = 0 ] || fail "sbatch --wait exited $status (job ${job:-?})" "$out"
grep -q "^shards: .*:[0-9]*,.*:[0-9]*$" "$out" || fail "the shards did not announce two addresses" "$out"
grep -q "replicas: 3 started, 0 failed" "$out" || fail "not every replica finished" "$out"
acc=$(sed -n 's/^test accuracy: \([0-9.]*\)%.*/\1/p' "$out")
[ -n "$acc" ] || fail "no test accuracy" "$out"
awk -v a="$acc" 'BEGIN {exit !(a >= 90)}' || fail "test accuracy $acc% < 90%" "$out"
for s in 0 1; do
  [ -s "$tmp/run/shards/mnist.shard-$s.safetensors" ] || fail "shard $s left no checkpoint when stopped" "$tmp/run/shard$s.out"
  grep -q "shard $s stopped at version [1-9]" "$tmp/run/shard$s.log" || fail "shard $s did not stop cleanly" "$tmp/run/shard$s.log"
done
grep -q "^[0-9a-f]\{64\}$" "$tmp/run/secret" && [ "$(stat -c %a "$tmp/run/secret")" = 600 ] ||
  fail "the job's secret is not 32 random bytes readable by its user only"
squeue -h -j "$job" 2>/dev/null | grep -q . && fail "job $job still in the queue"
survivors=$(pgrep -f "$bin (shard|replica)" | wc -l)
[ "$survivors" = 0 ] || fail "$survivors processes of the job outlived it"
echo "ok: a Downpour job under Slurm (job $job): 2 shard and 3 replica steps found each other, test accuracy $acc%"
