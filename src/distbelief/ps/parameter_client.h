// ParameterClient: a replica's (or the coordinator's) typed view of all shards. It splits the
// flat parameter vector by the ShardMap, talks to every shard concurrently, and retries a shard
// that is unavailable with exponential backoff (100 ms doubling to 1 s) until `retry_for` runs
// out, so a restarted shard or a network that comes back is picked up without the caller knowing.
// A push that timed out may be retried and so applied twice (at least once); a push refused by
// the shard (bad size, NaN) is not retried. Thread-compatible: one client per replica thread.
#pragma once

#include <future>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "distbelief/ps/shard_map.h"
#include "distbelief/transport/transport.h"

namespace distbelief {

struct ClientOptions {
  Millis call_timeout{10000};  // one RPC
  Millis retry_for{30000};     // keep retrying an unavailable shard this long
  int replica = -1;            // sent with pulls and pushes; -1 for the coordinator
};

// A started operation. Wait returns its Status, or kDeadlineExceeded if it is not done within
// `timeout` (the operation then finishes, or fails, in the background and frees itself).
class PendingOp {
 public:
  explicit PendingOp(std::shared_future<Status> f) : f_(std::move(f)) {}
  [[nodiscard]] Status Wait(Millis timeout);

 private:
  std::shared_future<Status> f_;
};

struct PullResult {
  std::vector<uint64_t> versions;  // per shard
  int64_t min_replica_clock = -1;  // min over shards of their slowest live replica (-1: unknown)
};

class ParameterClient {
 public:
  // Connects to shard s at addresses[s]. kInvalidArgument if the count disagrees with the map.
  static StatusOr<std::unique_ptr<ParameterClient>> Connect(Transport* transport,
                                                            const std::vector<std::string>& addresses,
                                                            const ShardMap& map, ClientOptions o);

  // Fetches every shard's range into params (map.total() floats).
  [[nodiscard]] Status Pull(std::span<float> params, PullResult* result);
  // Sends each shard its range of grad, computed from parameters of `based_on` versions, with the
  // replica's clock. REQUIRES: grad, *staleness and this client stay alive until the op completes
  // (Wait returned its result).
  PendingOp PushAsync(std::span<const float> grad, const std::vector<uint64_t>& based_on,
                      int64_t clock, std::vector<uint64_t>* staleness = nullptr);

  // Sandblaster's vector operations, run on every shard; Dot sums the shards' partial sums.
  [[nodiscard]] StatusOr<double> Dot(const std::string& a, const std::string& b);
  [[nodiscard]] Status Axpy(double alpha, const std::string& a, const std::string& b);
  [[nodiscard]] Status Scale(double alpha, const std::string& a);
  [[nodiscard]] Status Copy(const std::string& a, const std::string& b);
  [[nodiscard]] Status BeginBatch(int64_t batch);
  // Adds a work portion's gradient into every shard's "acc" (once per (batch, portion)).
  [[nodiscard]] Status Accumulate(std::span<const float> grad, int64_t batch, int64_t portion);

  const ShardMap& map() const { return map_; }

 private:
  ParameterClient(const ShardMap& map, ClientOptions o) : map_(map), o_(o) {}
  // Runs fn(s) for every shard concurrently, each with retries; returns the first error.
  Status ForEachShard(const std::function<Status(int)>& fn);
  Status WithRetry(const std::function<Status()>& call);
  Status Op(rpc::VectorOpRequest req, std::vector<double>* values = nullptr);

  ShardMap map_;
  ClientOptions o_;
  std::vector<std::shared_ptr<ShardChannel>> shards_;
};

}  // namespace distbelief
