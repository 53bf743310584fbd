// The parameter-server side of a distributed run as one process sees it: the transport, the
// shards this process serves (none when the config names external shards), and their addresses.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "distbelief/ps/parameter_shard.h"
#include "distbelief/ps/shard_map.h"
#include "distbelief/train/config.h"
#include "distbelief/train/workload.h"
#include "distbelief/transport/transport.h"

namespace distbelief {

struct Cluster {
  std::unique_ptr<Transport> transport;
  std::vector<std::unique_ptr<ParameterShard>> shards;  // served here
  std::vector<std::unique_ptr<Transport::Server>> servers;
  std::vector<std::string> addresses;                    // of every shard, in shard order
  std::unique_ptr<ShardMap> map;
};

// The shared secret: the contents of d.secret_file (trailing newline dropped) or the environment
// variable DISTBELIEF_SECRET; "" when neither is set. kNotFound for an unreadable file.
StatusOr<std::string> LoadSecret(const DistributedOptions& d);
// Transport options for the config: the secret and the message size limit.
StatusOr<TransportOptions> MakeTransportOptions(const Config& c);

// Makes the transport, then either starts config.distributed.shards shards here (holding
// `initial`, split by key range, applying config.optimizer, checkpointing if configured) served
// on loopback, or records the external shard addresses.
// `map` (default: even key ranges) and `customize` (called on each shard's options before it is
// created) let a workload place cuts and add shard-side constraints.
StatusOr<std::unique_ptr<Cluster>> StartCluster(const Config& config, std::span<const float> initial,
                                                const ShardMap* map = nullptr,
                                                const std::function<void(int, ShardOptions*)>& customize = {});

// What both Downpour and Sandblaster start from: the data, a workload holding the model's initial
// parameters (same seed, same values in every process), those values flat, and the cluster.
struct DistributedSetup {
  std::shared_ptr<const Dataset> data;
  std::unique_ptr<Workload> init;
  std::vector<float> initial;
  std::unique_ptr<Cluster> cluster;
};
StatusOr<DistributedSetup> SetUpDistributed(const Config& config);

// Shard options for shard `index` of the config (update rule, checkpoint path).
ShardOptions MakeShardOptions(const Config& config, int index);

}  // namespace distbelief
