#include "distbelief/train/cluster.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace distbelief {

StatusOr<std::string> LoadSecret(const DistributedOptions& d) {
  if (!d.secret_file.empty()) {
    std::ifstream in(d.secret_file);
    if (!in) return absl::NotFoundError("cannot read secret file " + d.secret_file);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string s = ss.str();
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    if (s.empty()) return absl::InvalidArgumentError("secret file " + d.secret_file + " is empty");
    return s;
  }
  const char* env = std::getenv("DISTBELIEF_SECRET");
  return std::string(env ? env : "");
}

StatusOr<TransportOptions> MakeTransportOptions(const Config& c) {
  TransportOptions o;
  DB_ASSIGN_OR_RETURN(o.secret, LoadSecret(c.distributed));
  o.tls_cert_file = c.distributed.tls_cert_file;
  o.tls_key_file = c.distributed.tls_key_file;
  o.tls_root_file = c.distributed.tls_root_file;
  o.tls_target_name = c.distributed.tls_target_name;
  o.tensor_socket = c.distributed.data_plane == "socket";
  return o;
}

ShardOptions MakeShardOptions(const Config& config, int index) {
  ShardOptions so;
  so.shard = index;
  so.optimizer = config.optimizer;
  if (!config.distributed.shard_checkpoint_dir.empty())
    so.checkpoint_path = config.distributed.shard_checkpoint_dir + "/shard-" + std::to_string(index) + ".safetensors";
  so.checkpoint_every = config.distributed.shard_checkpoint_every;
  return so;
}

StatusOr<std::unique_ptr<Cluster>> StartCluster(const Config& config, std::span<const float> initial,
                                                const ShardMap* map,
                                                const std::function<void(int, ShardOptions*)>& customize) {
  const DistributedOptions& d = config.distributed;
  auto c = std::make_unique<Cluster>();
  DB_ASSIGN_OR_RETURN(TransportOptions to, MakeTransportOptions(config));
  c->transport = d.transport == "grpc" ? MakeGrpcTransport(to) : MakeInprocTransport(to);
  c->map = map ? std::make_unique<ShardMap>(*map)
              : std::make_unique<ShardMap>(static_cast<int64_t>(initial.size()), static_cast<int>(d.shards));
  if (!d.shard_addresses.empty()) {
    c->addresses = d.shard_addresses;
    return c;
  }
  for (int s = 0; s < c->map->num_shards(); ++s) {
    ShardOptions so = MakeShardOptions(config, s);
    if (customize) customize(s, &so);
    DB_ASSIGN_OR_RETURN(auto shard, ParameterShard::Create(so,
                                                           initial.subspan(c->map->begin(s), c->map->size(s))));
    DB_ASSIGN_OR_RETURN(auto server, c->transport->ServeShard(d.transport == "grpc" ? "127.0.0.1:0" : "", shard.get()));
    c->addresses.push_back(server->address());
    c->shards.push_back(std::move(shard));
    c->servers.push_back(std::move(server));
  }
  return c;
}

}  // namespace distbelief

namespace distbelief {

StatusOr<DistributedSetup> SetUpDistributed(const Config& config) {
  DistributedSetup s;
  DB_ASSIGN_OR_RETURN(s.data, Dataset::Load(config.train));
  DB_ASSIGN_OR_RETURN(s.init, Workload::Create(config, s.data));
  s.initial.resize(s.init->num_params());
  s.init->GetParams(s.initial);
  DB_ASSIGN_OR_RETURN(s.cluster, StartCluster(config, s.initial));
  return s;
}

}  // namespace distbelief
