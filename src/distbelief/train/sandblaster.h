// Sandblaster L-BFGS (Dean et al. 2012, §4.2). A coordinator runs L-BFGS without ever holding the
// parameters: the shards keep x, the gradient, the direction and the history pairs, and the
// coordinator sends them vector operations (dot, axpy, scale, copy) from which the two-loop
// recursion and the line search are built; only scalars come back. Each function evaluation is
// a batch cut into many small portions that replicas take one at a time as they finish; near the
// end of a batch idle replicas re-run outstanding portions as backup tasks, the first result wins
// (the shards count each portion's gradient once), so a straggler does not hold the batch up.
#pragma once

#include <vector>

#include "distbelief/train/config.h"
#include "distbelief/train/downpour.h"

namespace distbelief {

struct SandblasterOptions {
  std::vector<int> worker_delay_ms;  // testing: extra time replica r spends on each portion
  int64_t max_iterations = 0;        // 0 = config.distributed.lbfgs_iterations
};

struct SandblasterResult {
  DistributedResult run;
  std::vector<double> batch_seconds;  // wall time of every function evaluation
  int64_t evaluations = 0;
  int64_t backup_tasks = 0;           // portions run a second time
};

// With distributed.worker_addresses set, the portions go to those worker processes (`distbelief
// worker`) instead of replica threads started here; with shard_addresses, to external shards.
StatusOr<SandblasterResult> RunSandblaster(const Config& config, const SandblasterOptions& options = {});

// One Sandblaster worker as its own process (`distbelief worker`): serves work portions over gRPC
// at `listen` (printing "worker R listening on ADDRESS"), pulling from and accumulating into the
// shards at `shard_addresses`, until SIGTERM or SIGINT.
Status RunSandblasterWorkerProcess(const Config& config, int index, const std::vector<std::string>& shard_addresses,
                                   const std::string& listen);

}  // namespace distbelief
