// The engine's options, typed, one struct per part: [train] (its generic keys), [optimizer] and
// [distributed] of a config. ParseEngineOptions reads them once, at the edge, with every
// cross-field check; below it nothing parses strings or sees a config file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "distbelief/base/status.h"
#include "distbelief/config/config.h"
#include "distbelief/optim/lbfgs.h"
#include "distbelief/optim/schedule.h"
#include "distbelief/optim/update_rules.h"
#include "distbelief/ps/parameter_client.h"
#include "distbelief/transport/transport.h"

namespace distbelief {

// [train]: what every driver needs. (Workloads read their own keys from [train] too, such as
// MNIST's data_dir and epochs.)
struct TrainOptions {
  uint64_t seed = 1;             // initialization, data order, dropout
  int64_t threads = 0;           // 0 = all cores (OMP_NUM_THREADS if set)
  bool deterministic = false;    // local: same seed and threads -> same bits (threads 1 if 0)
  // lr_schedule = "constant" | "cosine" (to 5% of the rate at the end), warmup_steps. Local: per
  // step; Downpour: per update a shard applies.
  ScheduleOptions schedule{Schedule::kCosine, 0, 0.05f};
  std::string run_dir = "runs/mnist";  // checkpoint.safetensors and metrics.jsonl go here
  int64_t checkpoint_every = 0;  // local: steps between checkpoints; 0 = each epoch and the end
  int64_t log_every = 100;       // local: steps between metrics records
  int64_t max_steps = 0;         // stop after this many steps of all replicas; 0 = the workload's
  bool tensorboard = false;      // metrics also as TensorBoard scalars in run_dir (io/tfevents.h)
  // Not keys: what the command line adds.
  std::string config_text;       // the config as given, stored in checkpoints
  std::string resume;            // local: continue from this checkpoint ("" = start afresh)
};

enum class Mode {
  kLocal,        // one replica in this process (no [distributed] section)
  kDownpour,     // Dean et al. 2012, §4.1
  kSandblaster,  // §4.2
};

// [distributed], Downpour's part.
struct DownpourOptions {
  int replicas = 4;                  // model replicas (threads here, or processes under launch)
  int64_t n_fetch = 1;               // steps between parameter fetches
  int64_t n_push = 1;                // steps between gradient pushes
  int64_t warmstart_steps = 0;       // replica 0 alone for this many steps first
  int64_t staleness_bound = 0;       // max clock lead over the slowest live replica; 0 = off
  bool synchronous = false;          // all replicas wait for each other every step
  bool fetch_in_background = false;  // the next fetch runs while the replica computes (the
                                     // paper's fetch thread); not with synchronous/staleness_bound
  // A fetch first waits for the replica's own push in flight, so a replica always computes on
  // parameters that hold its last gradient (false: the paper's fully decoupled threads).
  bool fetch_after_push = true;
  // A replica whose step fails (a dead model partition) is rebuilt and refetches the parameters,
  // up to this many times in all; past that it is dropped and the run goes on without it. Under
  // `launch`, a replica process that dies is started again (at the step it had reached) as long
  // as restarts are left.
  int replica_restarts = 0;
};

// [distributed], Sandblaster's part.
struct SandblasterOptions {
  int replicas = 4;                     // workers taking portions (threads here, or processes)
  int64_t portions_per_replica = 8;     // work portions per replica per batch
  LbfgsOptions lbfgs{10, 20, 0.0, 1e-4, 12};  // lbfgs_history, lbfgs_iterations
  std::vector<std::string> worker_addresses;  // external workers (gRPC); empty = threads here
};

// [distributed], the parameter server's part.
struct ClusterOptions {
  int shards = 2;                             // shards per parameter group started here
  std::vector<std::string> shard_addresses;   // external shards (gRPC), group by group; empty = start them here
  TransportOptions transport;                 // transport, data_plane, secret_file, tls_*
  // An injected transport (tests: transport/fault_injection.h); nullptr = one made from
  // `transport`. Not owned; must outlive the run.
  Transport* injected_transport = nullptr;
  std::string checkpoint_dir;    // shard_checkpoint_dir: shards checkpoint here ("" = never)
  int64_t checkpoint_every = 0;  // shard_checkpoint_every: updates between shard checkpoints
  // shard_checkpoint_seconds: also checkpoint updates unsaved this long (0 = by count only)
  std::chrono::milliseconds checkpoint_interval{0};
  // shard_push_log: each shard logs pushes ahead of applying them (ShardOptions::push_log);
  // shard_push_log_sync_seconds: and fdatasyncs the log this often (0 = never)
  bool push_log = false;
  std::chrono::milliseconds push_log_sync{0};
  // ledger_dir: every shard and replica client writes a ledger of push ids there (ShardOptions,
  // ClientOptions; tools/chaos reads them). "" = none.
  std::string ledger_dir;
  ClientOptions client;          // call timeout and retry window of every replica's client
};

struct DistributedOptions {
  Mode mode = Mode::kLocal;
  DownpourOptions downpour;
  SandblasterOptions sandblaster;
  ClusterOptions cluster;
};

struct EngineOptions {
  TrainOptions train;
  OptimizerOptions optimizer;
  DistributedOptions distributed;
};

// Reads [train]'s generic keys, [optimizer] and [distributed] (absent: Mode::kLocal). The shared
// secret is read here, from distributed.secret_file or the DISTBELIEF_SECRET environment
// variable. kInvalidArgument naming the key for a bad value or a conflicting combination.
StatusOr<EngineOptions> ParseEngineOptions(ConfigFile* file);

// The shared secret in `path` (trailing newline dropped); kNotFound if unreadable,
// kInvalidArgument if empty.
StatusOr<std::string> ReadSecretFile(const std::string& path);

}  // namespace distbelief
