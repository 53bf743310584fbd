// Sandblaster L-BFGS (Dean et al. 2012, §4.2). A coordinator runs L-BFGS (optim/lbfgs.h, the
// same iteration as in one process) without ever holding the parameters: its vector space is the
// shards, which keep x, the gradient, the direction and the history pairs and run the dot
// products and updates on their ranges; only scalars come back. Each function evaluation is the
// whole batch cut into many small portions that replicas take one at a time as they finish; near
// the end of a batch idle replicas re-run outstanding portions as backup tasks, the first result
// wins (the shards count each portion's gradient once), so a straggler does not hold the batch up.
//
// The model must have one parameter group and a fixed example set (ReplicaModel::num_examples);
// otherwise kInvalidArgument naming distributed.mode.
#pragma once

#include <string>

#include "distbelief/base/status.h"
#include "distbelief/train/options.h"
#include "distbelief/train/replica_model.h"

namespace distbelief {

// With e.distributed.sandblaster.worker_addresses the portions go to those worker processes
// (`distbelief worker`) instead of replica threads started here; with cluster.shard_addresses,
// to external shards. RunResult::steps counts L-BFGS iterations.
StatusOr<RunResult> RunSandblaster(const EngineOptions& e, const Job& job);

// One Sandblaster worker as its own process (`distbelief worker`): serves work portions over the
// cluster's transport at `listen` (printing "worker INDEX listening on ADDRESS"), pulling from and
// accumulating into the shards at cluster.shard_addresses, until SIGTERM or SIGINT.
Status RunSandblasterWorker(const EngineOptions& e, const Job& job, int index, const std::string& listen);

}  // namespace distbelief
