// `distbelief launch`: a local cluster of processes from one config. It starts the shards
// (`distbelief shard`, each on its own loopback port), then replica 0 and, once the shards have
// taken warmstart_steps updates, the other replicas (`distbelief replica`), and watches them:
//   - a shard that dies is restarted on the same address from its last checkpoint (shards
//     checkpoint every distributed.shard_checkpoint_every updates; the updates since are lost);
//   - a replica that dies is reported and the run goes on with the others;
// when every replica has finished it evaluates the parameters held by the shards, writes
// run_dir/checkpoint.safetensors, and stops the shards with SIGTERM.
// Every process gets the shared secret (generated when none is configured) in DISTBELIEF_SECRET.
#pragma once

#include <string>
#include <vector>

#include "distbelief/base/status.h"
#include "distbelief/train/config.h"
#include "distbelief/train/workload.h"

namespace distbelief {

struct LaunchOptions {
  std::string self;                    // path of the distbelief binary to run the roles with
  std::string config_path;
  std::vector<std::string> overrides;  // --set values, passed on to every role
};

struct LaunchResult {
  EvalResult eval;
  int replicas_failed = 0;
  int shard_restarts = 0;
  double seconds = 0.0;
};

StatusOr<LaunchResult> Launch(const Config& config, const LaunchOptions& options);

// Serves shard `index` of the config at `listen` until SIGTERM or SIGINT, then checkpoints (if
// configured) and returns. Prints "shard INDEX listening on ADDRESS" on stdout once serving.
Status RunShardProcess(const Config& config, int index, const std::string& listen);

}  // namespace distbelief
