// Downpour SGD (Dean et al. 2012, §4.1): R model replicas, each on its own part of the data,
// fetch the parameters from the sharded parameter server every n_fetch steps and push their
// accumulated gradients every n_push steps; the shards apply the update rule (Adagrad, as in the
// paper) themselves. Pushes run in the background while the replica computes the next steps
// (the paper's weakly synchronized threads). Warmstart runs replica 0 alone first; an optional
// bound keeps every replica within k clock ticks of the slowest live one (stale synchronous
// parallel); `synchronous` makes all replicas step together (for comparison).
//
// A replica that fails (its shard unreachable past the retry window, an error from its data) is
// dropped and logged; the run goes on while at least one replica lives.
#pragma once

#include "distbelief/base/status.h"
#include "distbelief/train/config.h"
#include "distbelief/train/local_trainer.h"
#include "distbelief/train/workload.h"

namespace distbelief {

struct DistributedResult {
  TrainResult train;
  double mean_staleness = 0.0;  // shard versions between a gradient's fetch and its application
  uint64_t max_staleness = 0;
  int64_t replicas_failed = 0;
  double seconds = 0.0;          // wall time, without the target-loss checks
  double cpu_seconds = 0.0;      // process CPU time over the same span, without the checks
  int64_t examples = 0;          // processed by all replicas
};

// Runs Downpour as configured ([distributed] mode = "downpour"), writes metrics and a final
// checkpoint of the parameters to train.run_dir, and evaluates on the test set.
// `stop_when_test_loss_below` (> 0) ends the run early once the loss on the first 2,000 test
// examples reaches it (benchmarks measure time to a target loss); that check runs every
// `eval_every_s` seconds off the clock: the replicas park at their next step while it runs, and
// its time is left out of `seconds`.
StatusOr<DistributedResult> RunDownpour(const Config& config, double stop_when_test_loss_below = 0.0,
                                        double eval_every_s = 1.0);

// Steps each replica runs: epochs over its 1/R of the data, or max_steps / R.
int64_t DownpourStepsPerReplica(const Config& config, int64_t train_examples);

// One replica as its own process (`distbelief replica`): trains replica `index` of the config
// against the shards at `shard_addresses` over gRPC, logging progress. Returns when its steps
// are done; errors if the shards stay unreachable past the client's retry window.
Status RunDownpourReplicaProcess(const Config& config, int index, const std::vector<std::string>& shard_addresses);

// Pulls the parameters from the shards at `shard_addresses`, evaluates them on the test set and
// writes train.run_dir/checkpoint.safetensors (the end of a multi-process run).
StatusOr<EvalResult> EvaluateShards(const Config& config, const std::vector<std::string>& shard_addresses);

}  // namespace distbelief
