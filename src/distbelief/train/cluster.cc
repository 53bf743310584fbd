#include "distbelief/train/cluster.h"

namespace distbelief {

std::vector<GroupSpec> GroupsOf(ReplicaModel* model) {
  std::vector<GroupSpec> groups(model->num_groups());
  for (int g = 0; g < model->num_groups(); ++g) {
    const std::vector<Param*> params = model->params(g);
    groups[g].initial.resize(CountParams(params));
    CopyParamsToFlat(params, groups[g].initial);
    groups[g].bound = model->norm_bound(g);
  }
  return groups;
}

ShardMap MapFor(int64_t total, int shards, const NormBound& bound) {
  if (bound.blocks.count == 0) return ShardMap(total, shards);
  return ShardMap::Aligned(total, shards, {bound.blocks});
}

ShardOptions ParameterServer::OptionsFor(const ClusterOptions& c, const ShardPlan& plan, const ShardMap& map,
                                         const NormBound& bound, int group, int shard, int groups) {
  ShardOptions so;
  so.shard = group * map.num_shards() + shard;
  so.optimizer = plan.optimizer;
  so.schedule = plan.schedule;
  so.total_updates = plan.total_updates;
  if (!c.checkpoint_dir.empty()) {
    const std::string g = groups > 1 ? ".group-" + std::to_string(group) : "";
    so.checkpoint_path = c.checkpoint_dir + "/" + plan.checkpoint_name + g + ".shard-" + std::to_string(shard) +
                         ".safetensors";
  }
  so.checkpoint_every = c.checkpoint_every;
  so.checkpoint_interval = c.checkpoint_interval;
  so.push_log = c.push_log;
  so.push_log_sync = c.push_log_sync;
  so.ledger_dir = c.ledger_dir;
  // This shard's whole blocks of the bound, relative to its start (MapFor never cuts a block).
  so.norm_bound = RestrictToRange(bound, map.begin(shard), map.end(shard));
  return so;
}

StatusOr<std::unique_ptr<ParameterServer>> ParameterServer::Start(const ClusterOptions& c, const ShardPlan& plan,
                                                                   const std::vector<GroupSpec>& groups) {
  if (c.push_log && c.checkpoint_dir.empty() && c.shard_addresses.empty())  // shards started here
    return absl::InvalidArgumentError("distributed.shard_push_log needs distributed.shard_checkpoint_dir (the log "
                                      "lives beside the checkpoints; under launch it defaults to RUN_DIR/shards)");
  std::unique_ptr<ParameterServer> ps(new ParameterServer());
  ps->client_ = c.client;
  if (c.injected_transport) {
    ps->transport_ = c.injected_transport;
  } else {
    ps->owned_transport_ = MakeTransport(c.transport);
    ps->transport_ = ps->owned_transport_.get();
  }
  const bool external = !c.shard_addresses.empty();
  // External shards are listed group by group: the shards of group 0, then of group 1, ...
  const size_t G = groups.size();
  if (external && c.shard_addresses.size() % G != 0)
    return absl::InvalidArgumentError("distributed.shard_addresses lists " + std::to_string(c.shard_addresses.size()) +
                                      " shards, not a multiple of this model's " + std::to_string(G) +
                                      " parameter groups (one per model partition; list them group by group)");
  const int shards = external ? static_cast<int>(c.shard_addresses.size() / G) : c.shards;
  ps->groups_.resize(groups.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    Group& group = ps->groups_[g];
    const std::vector<float>& initial = groups[g].initial;
    group.map = MapFor(static_cast<int64_t>(initial.size()), shards, groups[g].bound);
    if (external) {
      group.addresses.assign(c.shard_addresses.begin() + g * shards, c.shard_addresses.begin() + (g + 1) * shards);
      continue;
    }
    for (int s = 0; s < shards; ++s) {
      const ShardOptions so = OptionsFor(c, plan, group.map, groups[g].bound, static_cast<int>(g), s,
                                         static_cast<int>(groups.size()));
      DB_ASSIGN_OR_RETURN(auto shard, ParameterShard::Create(so, std::span<const float>(initial).subspan(
                                                                      group.map.begin(s), group.map.size(s))));
      DB_ASSIGN_OR_RETURN(auto server, ps->transport_->ServeShard(ps->transport_->LocalAddress(""), shard.get()));
      group.addresses.push_back(server->address());
      group.shards.push_back(std::move(shard));
      group.servers.push_back(std::move(server));
    }
  }
  return ps;
}

ParameterServer::~ParameterServer() = default;

StatusOr<std::unique_ptr<ParameterClient>> ParameterServer::Connect(int group, int replica) const {
  DB_ASSIGN_OR_RETURN(auto channels, ConnectShards(transport_, groups_[group].addresses));
  ClientOptions co = client_;
  co.replica = replica;
  return ParameterClient::Create(std::move(channels), groups_[group].map, co);
}

StatusOr<std::vector<std::vector<ShardInfo>>> ParameterServer::Info() const {
  std::vector<std::vector<ShardInfo>> out;
  for (int g = 0; g < num_groups(); ++g) {
    DB_ASSIGN_OR_RETURN(auto client, Connect(g, -1));
    DB_ASSIGN_OR_RETURN(auto infos, client->Info());
    out.push_back(std::move(infos));
  }
  return out;
}

nlohmann::json ShardStatusRecord(int group, int shard, const ShardInfo* info) {
  nlohmann::json one = {{"group", group}, {"shard", shard}, {"up", info != nullptr}};
  if (info) {
    one["updates"] = info->version;
    one["durable"] = info->durable_version;
    one["incarnation"] = std::to_string(info->incarnation);
    one["error"] = info->background_error;
  }
  return one;
}

}  // namespace distbelief
