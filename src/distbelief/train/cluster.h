// The parameter server of one run as this process sees it: for every parameter group of the
// model (one per model partition; usually one), a ShardMap and its shards, either started here
// and served on the run's transport, or reached at external addresses (`distbelief shard`
// processes). The drivers get clients from it; nothing above it builds shards or maps.
// Thread-safe after Start.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "distbelief/ps/parameter_client.h"
#include "distbelief/ps/parameter_shard.h"
#include "distbelief/ps/shard_map.h"
#include "distbelief/train/options.h"
#include "distbelief/train/replica_model.h"
#include "distbelief/transport/transport.h"

namespace distbelief {

// One parameter group: its initial values (flat, params in order) and its norm bound.
struct GroupSpec {
  std::vector<float> initial;
  NormBound bound{{0, 1, 0}, 1.0f};
};

// How shards update: the rule, and the schedule over the run's expected number of updates.
struct ShardPlan {
  OptimizerOptions optimizer;
  ScheduleOptions schedule;
  int64_t total_updates = 0;  // per shard; 0 = constant rate
  std::string checkpoint_name = "model";  // shard checkpoints are <dir>/<name>.shard-<s>.safetensors
};

class ParameterServer {
 public:
  // Starts c.shards shards per group here, or, with c.shard_addresses, connects to those (one
  // group only: kInvalidArgument naming distributed.shard_addresses otherwise). Each group's map
  // keeps shard cuts off its norm bound's blocks, and each shard bounds the blocks it holds.
  static StatusOr<std::unique_ptr<ParameterServer>> Start(const ClusterOptions& c, const ShardPlan& plan,
                                                          const std::vector<GroupSpec>& groups);
  ~ParameterServer();

  int num_groups() const { return static_cast<int>(groups_.size()); }
  const ShardMap& map(int group) const { return groups_[group].map; }
  Transport* transport() const { return transport_; }
  // A client of group g's shards, sending `replica` with its calls (-1: a coordinator).
  StatusOr<std::unique_ptr<ParameterClient>> Connect(int group, int replica) const;
  // Every shard's state, per group.
  StatusOr<std::vector<std::vector<ShardInfo>>> Info() const;
  // Shard `shard` of group 0's options (what `distbelief shard` serves with).
  static ShardOptions OptionsFor(const ClusterOptions& c, const ShardPlan& plan, const ShardMap& map,
                                 const NormBound& bound, int group, int shard, int groups);

 private:
  ParameterServer() = default;
  struct Group {
    ShardMap map{0, 1};
    std::vector<std::unique_ptr<ParameterShard>> shards;  // started here
    std::vector<std::unique_ptr<Transport::Server>> servers;
    std::vector<std::string> addresses;
  };
  std::unique_ptr<Transport> owned_transport_;
  Transport* transport_ = nullptr;
  ClientOptions client_;
  std::vector<Group> groups_;
};

// The initial values and bounds of every group of `model` (replica 0's model: the same seed
// gives the same values in every process).
std::vector<GroupSpec> GroupsOf(ReplicaModel* model);

// One shard's entry in run_dir/cluster.jsonl, the record the dashboard shows (docs/dashboard.md):
// group, shard, up (it answered Info), and when it did: updates (its version), durable (the
// version its last checkpoint holds), incarnation (new when the shard process restarts), error.
nlohmann::json ShardStatusRecord(int group, int shard, const ShardInfo* info);

// Group g's map: even cuts moved off the bound's blocks.
ShardMap MapFor(int64_t total, int shards, const NormBound& bound);

}  // namespace distbelief
