// ParameterClient: a replica's (or the coordinator's) typed view of all shards. It splits the
// flat parameter vector by the ShardMap, talks to every shard concurrently, and retries a shard
// that is unavailable with exponential backoff (100 ms doubling to 1 s) until `retry_for` runs
// out, so a restarted shard or a network that comes back is picked up without the caller knowing.
// A push that timed out may be retried and so applied twice (at least once); a push refused by
// the shard (bad size, NaN) is not retried. Thread-compatible: one client per replica thread
// (a Pull and a push in flight may overlap).
//
// The flat vector may live in pieces laid end to end (a model's parameter tensors in params()
// order), so a pull lands straight in the model and a push reads straight from its gradients.
// The client keeps its threads (one per shard beyond the first for the fan-out, one for pushes)
// and its message buffers for its lifetime: a step allocates nothing and starts no thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
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

  ~ParameterClient();  // waits for the pushes in flight (each bounded by its deadlines)

  // Fetches every shard's range into params (map.total() floats), whole or in pieces.
  [[nodiscard]] Status Pull(std::span<float> params, PullResult* result);
  [[nodiscard]] Status Pull(const std::vector<std::span<float>>& pieces, PullResult* result);
  // Sends each shard its range of grad (whole or in pieces), computed from parameters of
  // `based_on` versions, with the replica's clock. grad is copied into the outgoing messages
  // before this returns, so the caller may overwrite it at once; a gradient holding NaN or Inf
  // is refused whole. Pushes run one after another on the client's push thread. REQUIRES:
  // *staleness and this client stay alive until the op completes (Wait returned its result).
  PendingOp PushAsync(std::span<const float> grad, const std::vector<uint64_t>& based_on,
                      int64_t clock, std::vector<uint64_t>* staleness = nullptr);
  PendingOp PushAsync(const std::vector<std::span<const float>>& pieces, const std::vector<uint64_t>& based_on,
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
  struct PushJob {
    std::vector<rpc::PushRequest> requests;  // per shard; their buffers are reused job to job
    std::vector<uint64_t>* staleness = nullptr;
    std::promise<Status> done;
  };
  ParameterClient(const ShardMap& map, ClientOptions o);
  // Runs fn(s) for every shard concurrently (shard 0 on the calling thread, the others on the
  // fan-out threads), each with retries; returns the first error.
  Status ForEachShard(const std::function<Status(int)>& fn);
  void FanOutLoop();
  void PushLoop();
  Status WithRetry(const std::function<Status()>& call);
  Status Op(rpc::VectorOpRequest req, std::vector<double>* values = nullptr);

  ShardMap map_;
  ClientOptions o_;
  std::vector<std::shared_ptr<ShardChannel>> shards_;

  std::mutex pull_mu_;  // one pull at a time uses the reply buffers
  std::vector<rpc::PullReply> pull_replies_;

  std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  bool closing_ = false;       // the push thread stops once its queue is empty
  bool stop_fan_out_ = false;  // then the fan-out threads
  std::deque<std::function<void()>> fan_out_;  // calls waiting for a fan-out thread
  std::deque<std::unique_ptr<PushJob>> pushes_;  // waiting for the push thread
  std::vector<std::unique_ptr<PushJob>> spare_pushes_;
  std::vector<std::thread> threads_;  // fan-out threads, then the push thread
};

}  // namespace distbelief
