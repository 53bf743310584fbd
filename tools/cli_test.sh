#!/usr/bin/env bash
# End-to-end checks of the distbelief command line: a short run, eval of its checkpoint, and bad
# input that must fail with exit status 2, a message naming the problem, and nothing overwritten.
# Usage: cli_test.sh PATH/TO/distbelief   (run from the repository root)
set -u
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
check() {  # check NAME EXPECTED_STATUS PATTERN -- CMD...
  local name=$1 want=$2 pattern=$3
  shift 4
  local out status
  out=$("$@" 2>&1)
  status=$?
  if [ "$status" = "$want" ] && grep -q -- "$pattern" <<<"$out"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL: $name (status $status, want $want; pattern '$pattern')"
    echo "$out" | tail -5
  fi
}
cfg=configs/mnist_mlp.toml
run=(--set 'model.hidden=[32]' --set train.max_steps=30 --set "train.run_dir=\"$tmp/run\"")
check "short run" 0 "test accuracy" -- "$bin" train --config $cfg "${run[@]}"
check "eval checkpoint" 0 "test accuracy" -- "$bin" eval --config $cfg --set 'model.hidden=[32]' --checkpoint "$tmp/run/checkpoint.safetensors"
# A second run into the same run_dir would overwrite the first one's checkpoint: refused, and the
# checkpoint left as it was, unless the user says --overwrite or --resume.
cp "$tmp/run/checkpoint.safetensors" "$tmp/first.safetensors"
check "run_dir already used" 2 "already holds a run" -- "$bin" train --config $cfg "${run[@]}"
if cmp -s "$tmp/run/checkpoint.safetensors" "$tmp/first.safetensors"; then pass=$((pass + 1)); else
  fail=$((fail + 1)); echo "FAIL: the refused run changed the first run's checkpoint"; fi
check "launch into a used run_dir" 2 "already holds a run" -- "$bin" launch --config configs/mnist_downpour.toml \
  --set "train.run_dir=\"$tmp/run\""
# A launch that ended early leaves only its shards' checkpoints: they hold a run too, and a launch
# told to --overwrite starts its shards at version 0, not from them (here: from garbage).
mkdir -p "$tmp/l/shards" && echo garbage >"$tmp/l/shards/mnist.shard-0.safetensors"
lrun=(--set "train.run_dir=\"$tmp/l\"" --set 'model.hidden=[16]' --set train.max_steps=20
      --set distributed.replicas=1 --set distributed.warmstart_steps=0)
check "launch beside old shard checkpoints" 2 "already holds a run" -- "$bin" launch --config configs/mnist_downpour.toml "${lrun[@]}"
check "launch --overwrite starts its shards afresh" 0 "version 0) listening" -- "$bin" launch \
  --config configs/mnist_downpour.toml "${lrun[@]}" --overwrite
# A model of two parameter groups (the GAN's discriminator and generator; Seq2Seq split into model
# partitions has one per partition): one shard process per group and shard, numbered group by group.
gan=(--set "train.run_dir=\"$tmp/gan\"" --set 'gan.g_hidden=[16]' --set 'gan.d_hidden=[8]' --set gan.d_pieces=2
     --set gan.noise=4 --set gan.train_size=600 --set gan.epochs=1 --set gan.parzen_samples=50 --set gan.parzen_test=50
     --set gan.parzen_validation=50 --set distributed.replicas=2 --set distributed.shards=1
     --set distributed.warmstart_steps=0)
check "launch of a model with two parameter groups" 0 "cluster: 2 shard processes, 2 replicas; 0 replicas died" -- \
  "$bin" launch --config configs/gan_mnist.toml "${gan[@]}"
check "--overwrite replaces it" 0 "test accuracy" -- "$bin" train --config $cfg "${run[@]}" --overwrite
check "--resume continues it" 0 "test accuracy" -- "$bin" train --config $cfg "${run[@]}" \
  --resume "$tmp/run/checkpoint.safetensors"
check "help" 0 "train" -- "$bin" --help
check "missing config" 2 "not found" -- "$bin" train --config "$tmp/none.toml"
printf '[train]\nepohcs = 3\n' >"$tmp/bad.toml"
check "unknown key" 2 "unknown key 'train.epohcs'" -- "$bin" train --config "$tmp/bad.toml"
check "wrong type" 2 "must be an integer" -- "$bin" train --config $cfg --set 'train.epochs="x"'
check "out of range" 2 "outside" -- "$bin" train --config $cfg --set train.batch_size=0
: >"$tmp/empty.toml"
check "empty config" 2 "is empty" -- "$bin" train --config "$tmp/empty.toml"
check "config is a folder" 2 "is a folder" -- "$bin" train --config "$tmp"
check "train_limit under a batch" 2 "train.train_limit = 8 is smaller than train.batch_size" -- "$bin" train --config $cfg \
  --set train.train_limit=8
check "two workloads" 2 "one workload per config" -- "$bin" train --config configs/cat.toml --set 'scale.widths=[8]'
check "conflicting options" 2 "distributed.warmstart_steps" -- "$bin" train --config configs/mnist_downpour.toml \
  --set distributed.synchronous=true
check "cat refuses sandblaster" 2 "sandblaster" -- "$bin" train --config configs/cat.toml \
  --set 'distributed.mode="sandblaster"' --set cat.steps_per_stage=2 --set "train.run_dir=\"$tmp/catsb\""
check "cat cannot be launched" 2 "stage by stage" -- "$bin" launch --config configs/cat.toml
check "open shard without a secret" 2 "without a secret" -- env -u DISTBELIEF_SECRET "$bin" shard \
  --config configs/mnist_downpour.toml --index 0 --listen 0.0.0.0:0
check "missing data" 2 "cannot open" -- "$bin" train --config $cfg --set 'train.data_dir="/nonexistent"'
cp "$tmp/run/checkpoint.safetensors" "$tmp/keep.safetensors"
head -c 100 "$tmp/keep.safetensors" >"$tmp/trunc.safetensors"
check "truncated checkpoint" 2 "truncated" -- "$bin" eval --config $cfg --set 'model.hidden=[32]' --checkpoint "$tmp/trunc.safetensors"
check "wrong model for checkpoint" 2 "shape" -- "$bin" eval --config $cfg --set 'model.hidden=[33]' --checkpoint "$tmp/keep.safetensors"
check "unknown subcommand flag" 109 "" -- "$bin" train --config $cfg --bogus
check "downpour run" 0 "test accuracy" -- "$bin" train --config configs/mnist_downpour.toml --set 'model.hidden=[32]' \
  --set train.max_steps=80 --set "train.run_dir=\"$tmp/dp\""
check "downpour checkpoint evaluates" 0 "test accuracy" -- "$bin" eval --config configs/mnist_downpour.toml \
  --set 'model.hidden=[32]' --checkpoint "$tmp/dp/checkpoint.safetensors"
# The cat network: a very short run, then its checkpoint scored by eval face-neuron.
cat_run=(--set cat.steps_per_stage=5 --set cat.stages=1 --set "train.run_dir=\"$tmp/cat\""
         --set 'cat.train_dir="data/cat/train/photos"')  # the photos alone: a short load
check "cat network run" 0 "top-stage neuron: " -- "$bin" train --config configs/cat.toml "${cat_run[@]}"
check "face-neuron eval" 0 "top-stage neuron: " -- "$bin" eval face-neuron --config configs/cat.toml \
  --set cat.stages=1 --checkpoint "$tmp/cat/checkpoint.safetensors" --csv "$tmp/cat/neurons.csv"
check "face-neuron eval, wrong network" 2 "the network wants" -- "$bin" eval face-neuron --config configs/cat.toml \
  --set cat.stages=1 --set cat.maps=4 --checkpoint "$tmp/cat/checkpoint.safetensors"
check "face-neuron eval, missing folder" 2 "not found" -- "$bin" eval face-neuron --config configs/cat.toml \
  --set cat.stages=1 --checkpoint "$tmp/cat/checkpoint.safetensors" --faces /nonexistent
# The scaling lab: bad sweeps fail before anything runs, an empty corpus is named.
check "scale without [scale]" 2 "no \[scale\] section" -- "$bin" scale --config $cfg
printf '[scale]\nwidths = [32, 64]\nlayers = [2]\n' >"$tmp/scale_bad.toml"
check "scale, one depth per width" 2 "scale.layers" -- "$bin" scale --config "$tmp/scale_bad.toml"
mkdir -p "$tmp/empty_corpus"
check "scale, empty corpus" 2 "no non-empty documents" -- "$bin" scale --config configs/scale_lm.toml \
  --set "scale.corpus_dir=\"$tmp/empty_corpus\"" --set "scale.out_dir=\"$tmp/scale\""
if cmp -s "$tmp/run/checkpoint.safetensors" "$tmp/keep.safetensors"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: checkpoint changed by failed commands"; fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
