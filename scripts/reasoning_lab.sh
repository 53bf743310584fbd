#!/usr/bin/env bash
# The reasoning lab end to end (docs/reasoning.md; 48 minutes on 2 cores of a Zen 5 when the
# policy's tree search had 4,096 tokens a problem; the policy's evaluation at 16,384 takes 5m13s
# on 2 vCPUs of an Intel Xeon against 2m53s at 4,096, so about 50 minutes now):
#   1. the Countdown policy trained on optimal paths (configs/countdown.toml, runs/countdown) and,
#      for the same training tokens, on streams of search (runs/countdown_streams), each scored
#      greedily, best-of-8 and by the tree search (16,384 tokens a problem; the streams' 4,096);
#   2. a verifier for the optimal-path policy (outcome and process labels) and accuracy against
#      generated tokens for greedy, best-of-N, weighted vote, verifier-guided step beam search,
#      the tree search, verifier-valued MCTS (alone, and with the rules) and pass@N
#      (configs/verifier.toml);
#   3. three rounds of self-improvement on verified samples (configs/star.toml), and from a seed
#      policy given few solver traces, beside its control arm (configs/countdown_seed.toml,
#      configs/star_seed.toml), and the same by 2 actor-learners under Downpour
#      (configs/star_seed_actors.toml);
#   4. the second task: the same GPT on long multiplication written as steps, scored by its step
#      verifier (configs/multiply.toml, about 4 minutes).
# Each step's report is runs/<name>/report.md. Extra arguments go to every train command
# (e.g. --set countdown.train_tokens=3000000 for a shorter run).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/tools/distbelief
[ -x $bin ] || scripts/build.sh
$bin train --config configs/countdown.toml --overwrite "$@"
$bin train --config configs/countdown.toml --set 'countdown.traces="streams"' \
  --set 'train.run_dir="runs/countdown_streams"' --set countdown.tree_tokens=4096 --overwrite "$@"
$bin train --config configs/verifier.toml --overwrite
$bin train --config configs/star.toml --overwrite
$bin train --config configs/countdown_seed.toml --overwrite
$bin train --config configs/star_seed.toml --overwrite
$bin train --config configs/star_seed_actors.toml --overwrite
$bin train --config configs/multiply.toml --overwrite
for r in countdown countdown_streams verifier star countdown_seed star_seed star_seed_actors multiply; do echo "== runs/$r/report.md"; cat runs/$r/report.md; echo; done
