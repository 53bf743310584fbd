// Downpour SGD (Dean et al. 2012, §4.1), the engine's one replica loop. R model replicas, each on
// its own share of the data, fetch the parameters from the sharded parameter server every
// n_fetch steps and push their summed gradients every n_push steps; the shards apply the update
// rule (Adagrad, as in the paper) and the model's norm bounds themselves. A replica's pushes run
// in the background while it computes the next steps (the paper's weakly synchronized threads).
// Options (train/options.h, DownpourOptions), honoured for every workload: warmstart (replica 0
// alone first), a staleness bound (stale synchronous parallel), synchronous steps, background
// fetches, fetch_after_push, replica restarts. A model with several parameter groups (model
// partitions) has each group on its own shards, and each group's client talks only to those.
//
// A replica that fails (its shard unreachable past the retry window, an error from its model)
// is rebuilt while restarts are left, else dropped and logged; the run goes on while one lives.
#pragma once

#include "distbelief/base/status.h"
#include "distbelief/train/cluster.h"
#include "distbelief/train/options.h"
#include "distbelief/train/replica_model.h"

namespace distbelief {

// Runs job with e.distributed.downpour.replicas replica threads against shards started here (or
// at e.distributed.cluster.shard_addresses), writes metrics to train.run_dir and, with
// job.write_checkpoint, the final parameters to run_dir/checkpoint.safetensors.
StatusOr<RunResult> RunDownpour(const EngineOptions& e, const Job& job, TrainObserver* observer = nullptr);

// Steps of each of R replicas for the job (train.max_steps caps the total).
int64_t DownpourStepsEach(const EngineOptions& e, const Job& job, int replicas);
// How Downpour's shards update: the optimizer, and the schedule over the run's updates.
ShardPlan DownpourShardPlan(const EngineOptions& e, const Job& job);

// One replica as its own process (`distbelief replica`): replica `index` of the job against the
// shards at e.distributed.cluster.shard_addresses, with a progress line. Returns when its steps
// are done; an error if the shards stay unreachable past the client's retry window.
// progress_file ("" = none): the replica writes the number of steps it has finished there after
// each step and, if the file exists when it starts, begins at that step (a replica process
// started again after it died). With shard checkpoints by time (shard_checkpoint_seconds), it
// ends only once the shards' checkpoints hold its pushes (ParameterClient::Settle).
Status RunDownpourReplica(const EngineOptions& e, const Job& job, int index, const std::string& progress_file = "");

}  // namespace distbelief
