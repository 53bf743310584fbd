// Process roles and `distbelief launch`: the same job as a cluster of processes over gRPC.
//
//   shard    serves one shard of the job's parameters (restoring its checkpoint if there is one);
//            a model of G parameter groups (one per model partition) has G x shards of them,
//            numbered group by group (index = group * shards + shard)
//   replica  runs one Downpour replica against the shards
//   worker   serves Sandblaster portions
//   launch   starts the shards, then replica 0 and, once the shards have taken warmstart_steps
//            updates, the other replicas (or the workers, with this process as Sandblaster's
//            coordinator), and watches them: a shard that dies is restarted on the same address
//            from its last checkpoint (its clients push again what it lost); a replica that dies is
//            started again at the step it had reached while distributed.replica_restarts last,
//            else reported, and the run goes on. At the end it pulls the parameters from the shards.
//
// Children get typed options (RoleOptions, turned into flags by one function and read back by
// the command line into the same struct) and the config the launcher resolved, written to
// run_dir/launch/; the shared secret travels in a file only the user can read, never in the
// environment. Children die with the launcher (PR_SET_PDEATHSIG), and every path out of Launch,
// error or not, stops the children it started.
#pragma once

#include <string>
#include <vector>

#include "distbelief/base/status.h"
#include "distbelief/train/options.h"
#include "distbelief/train/replica_model.h"

namespace distbelief {

enum class Role { kShard, kReplica, kWorker };

// What a launcher tells one child process, beyond the config file.
struct RoleOptions {
  Role role = Role::kShard;
  std::string config_path;              // the resolved config (TOML)
  int index = 0;                        // shard, replica or worker index
  std::string listen = "127.0.0.1:0";   // shard, worker: where to serve
  std::vector<std::string> shards;      // replica, worker: the shards' gRPC addresses, group by group
  int threads = 0;                      // 0: the config's train.threads
  std::string secret_file;              // "" = the config's (or DISTBELIEF_SECRET)
  std::string shard_checkpoint_dir;     // shard: "" = the config's
  int64_t shard_checkpoint_every = -1;  // shard: -1 = the config's
  bool insecure = false;                // shard, worker: may serve a non-loopback address without a secret
  std::string progress_file;            // replica: where it records the steps it finished, and resumes
};

const char* RoleName(Role r);  // "shard", "replica", "worker": the subcommand
// The child's argv after the binary: the subcommand and its flags. The command line defines the
// same flags (tools/distbelief_main.cc) into a RoleOptions.
std::vector<std::string> RoleArgs(const RoleOptions& r);
// Applies a role's options to the engine options read from its config: gRPC, the shards'
// addresses, threads, the secret, shard checkpoints. kNotFound for an unreadable secret file;
// kFailedPrecondition for a shard or worker that would listen beyond loopback without a secret
// (unless r.insecure, which logs a warning).
Status ApplyRole(const RoleOptions& r, EngineOptions* e);
// True for 127.x.x.x, localhost and [::1] addresses ("HOST:PORT").
bool IsLoopbackAddress(const std::string& host_port);

// `distbelief shard`: serves shard `index` (group index / shards, shard index % shards) at `listen`
// until SIGTERM or SIGINT, then checkpoints (if configured). Prints "shard INDEX listening on
// ADDRESS" once serving.
Status RunShardRole(const EngineOptions& e, const Job& job, int index, const std::string& listen);

// The job's parameters as the shards at e.distributed.cluster.shard_addresses hold them now
// (one pull, as replica 0 would); kUnavailable if a shard cannot be reached. `distbelief
// collect` and the end of Launch.
StatusOr<std::unique_ptr<ReplicaModel>> PullFromShards(const EngineOptions& e, const Job& job);

struct LaunchOptions {
  std::string self;  // the distbelief binary the roles run with
};

struct LaunchResult {
  RunResult run;  // run.model: the parameters the shards held at the end
  int replicas_failed = 0;   // died with no restart left
  int replica_restarts = 0;  // replica processes started again after dying
  int shard_restarts = 0;
  int shard_processes = 0;   // shards x parameter groups
  double seconds = 0.0;
};

StatusOr<LaunchResult> Launch(const EngineOptions& e, const Job& job, const LaunchOptions& options);

}  // namespace distbelief
