// ParameterClient: a replica's (or a coordinator's) typed view of all shards of one parameter
// vector. It splits the flat vector by the ShardMap, talks to every shard concurrently through
// its ShardChannel, and retries a shard that is unavailable or slow (after 100 ms, 200 ms, then
// every 250 ms) until `retry_for` runs out, so a restarted shard or a network that comes back is
// picked up soon without the caller knowing. Each push carries the client's random id and
// a sequence number (shard_api.h: PushMeta), so a push retried after a timeout or a lost reply is
// applied once; a push the shard refuses (bad size, NaN) is not retried.
// Thread-compatible: one client per replica; a pull and a push in flight may overlap.
//
// The flat vector may live in pieces laid end to end (a model's parameter tensors in order), so
// a pull lands straight in the model and a push reads straight from its gradients. The client
// keeps its threads (one per shard beyond the first for the fan-out, one for pushes) and its
// buffers for its lifetime: a step allocates nothing and starts no thread.
#pragma once

#include <algorithm>
#include <atomic>
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

#include "distbelief/ps/shard_api.h"
#include "distbelief/ps/shard_map.h"

namespace distbelief {

struct ClientOptions {
  Millis call_timeout{10000};  // one call to one shard
  Millis retry_for{30000};     // keep retrying an unavailable shard this long
  int replica = -1;            // sent with pulls and pushes; -1 for a coordinator
  // "" = none; else a line per push a shard acknowledged goes to
  // ledger_dir/replica-REPLICA-CLIENT.tsv: "ack SHARD CLIENT SEQUENCE VERSION DUPLICATE", and
  // "replay ..." for one pushed again to a restarted shard (ids in hex). tools/chaos checks them
  // against the shards' ledgers (ShardOptions::ledger_dir).
  std::string ledger_dir;
};

struct PullResult {
  std::vector<uint64_t> versions;  // per shard
  int64_t min_replica_clock = -1;  // min over shards of their slowest live replica (-1: unknown)
};

struct PushResult {
  std::vector<uint64_t> versions;   // per shard, after the update
  std::vector<uint64_t> staleness;  // per shard: updates applied since the gradient's parameters
};

// A push on its way. It owns its result: a caller that stops waiting (a timeout) leaves nothing
// behind that the push could still write to.
class PendingPush {
 public:
  PendingPush() = default;
  explicit PendingPush(std::shared_future<StatusOr<PushResult>> f) : f_(std::move(f)) {}
  bool valid() const { return f_.valid(); }
  // The push's result; kDeadlineExceeded if it is not done within `timeout` (it then finishes, or
  // fails, in the background).
  [[nodiscard]] StatusOr<PushResult> Wait(Millis timeout) const;

 private:
  std::shared_future<StatusOr<PushResult>> f_;
};

class ParameterClient {
 public:
  // Talks to shard s through shards[s]. kInvalidArgument if the count disagrees with the map.
  static StatusOr<std::unique_ptr<ParameterClient>> Create(std::vector<std::shared_ptr<ShardChannel>> shards,
                                                           const ShardMap& map, ClientOptions o);

  ~ParameterClient();  // waits for the pushes in flight (each bounded by its deadlines)

  // Fetches every shard's range into the flat vector (map.total() floats), whole or in pieces.
  [[nodiscard]] StatusOr<PullResult> Pull(std::span<float> params);
  [[nodiscard]] StatusOr<PullResult> Pull(const std::vector<std::span<float>>& pieces);
  // Sends each shard its range of the gradient (whole or in pieces), computed from parameters of
  // `based_on` versions (one per shard), with the replica's clock. The gradient is copied before
  // this returns, so the caller may overwrite it at once; one holding NaN or Inf is refused whole
  // (no shard is sent anything). Pushes run one after another on the client's push thread.
  PendingPush PushAsync(std::span<const float> grad, const std::vector<uint64_t>& based_on, int64_t clock);
  PendingPush PushAsync(const std::vector<std::span<const float>>& pieces, const std::vector<uint64_t>& based_on,
                        int64_t clock);

  // Sandblaster's vector operations, run on every shard; Dot sums the shards' partial sums.
  [[nodiscard]] StatusOr<double> Dot(VectorId a, VectorId b);
  [[nodiscard]] Status Axpy(double alpha, VectorId a, VectorId b);  // b += alpha a
  [[nodiscard]] Status Scale(double alpha, VectorId a);
  [[nodiscard]] Status Copy(VectorId from, VectorId to);
  [[nodiscard]] Status BeginBatch(int64_t batch);
  // Adds a work portion's gradient to every shard's accumulator (once per (batch, portion)).
  [[nodiscard]] Status Accumulate(std::span<const float> grad, int64_t batch, int64_t portion);
  // Every shard's state, in shard order.
  [[nodiscard]] StatusOr<std::vector<ShardInfo>> Info();
  // With no push in flight (after the last one finished): waits until every shard's checkpoint
  // holds this client's acknowledged pushes, pushing them again to a shard that restarted
  // meanwhile, so that a replica may end without taking updates with it that only it could
  // restore. Needs shards that checkpoint by time (ShardOptions::checkpoint_interval); OK at
  // once for shards without checkpoints. kDeadlineExceeded, naming what is not durable, after
  // `timeout`.
  [[nodiscard]] Status Settle(Millis timeout);

  const ShardMap& map() const { return map_; }
  // Pushes sent again to a restarted shard so far (shard_api.h: durability).
  int64_t replayed_pushes() const { return replayed_.load(); }

 private:
  struct PushJob {
    std::vector<std::vector<float>> ranges;  // per shard; reused job to job
    std::vector<PushMeta> meta;
    std::promise<StatusOr<PushResult>> done;
  };
  ParameterClient(const ShardMap& map, ClientOptions o);
  // Runs fn(s) for every shard concurrently (shard 0 on the calling thread, the others on the
  // fan-out threads), each with retries; returns the first error.
  Status ForEachShard(const std::function<Status(int)>& fn);
  void FanOutLoop();
  void PushLoop();
  Status WithRetry(const std::function<Status()>& call);
  Status RunOnAll(const VectorOp& op, std::vector<double>* values = nullptr);

  ShardMap map_;
  ClientOptions o_;
  std::vector<std::shared_ptr<ShardChannel>> shards_;

  std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  bool closing_ = false;       // the push thread stops once its queue is empty
  bool stop_fan_out_ = false;  // then the fan-out threads
  std::deque<std::function<void()>> fan_out_;    // calls waiting for a fan-out thread
  std::deque<std::unique_ptr<PushJob>> pushes_;  // waiting for the push thread
  std::vector<std::unique_ptr<PushJob>> spare_pushes_;
  std::vector<std::thread> threads_;  // fan-out threads, then the push thread
  uint64_t client_id_ = 0;                  // this client's push id (shard_api.h: PushMeta)
  std::atomic<uint64_t> next_sequence_{0};  // pushes numbered so far

  // Durability (shard_api.h): per shard, the incarnation last seen and the pushes its checkpoints
  // do not hold yet, oldest first. Touched only by the push thread (and its fan-out of one push).
  struct Kept {
    PushMeta meta;
    std::vector<float> range;
    uint64_t applied_version = 0;
  };
  struct ShardLog {
    uint64_t incarnation = 0;
    std::deque<Kept> kept;
    std::vector<std::vector<float>> spare;  // buffers of dropped entries, reused
  };
  static constexpr size_t kMaxKept = 4096;  // a shard that never checkpoints keeps nothing anyway
  std::vector<ShardLog> logs_;
  std::atomic<int64_t> replayed_{0};
  // One push to shard s: sent with the incarnation expected; after a restart, what was kept is
  // pushed again first; on success it is kept until the shard's checkpoint holds it.
  Status PushToShard(int s, const PushMeta& meta, std::span<const float> range, PushReply* reply);
  // Pushes everything kept for shard s again, in order, to its new process `info` describes.
  Status Replay(int s, const ShardInfo& info);
  void Ledger(const char* what, int s, const PushMeta& meta, const PushReply& reply);
  int ledger_fd_ = -1;
  void Keep(ShardLog& log, const PushMeta& meta, std::span<const float> range, const PushReply& reply);
};

// Calls fn(piece_part, at) for each part of `pieces` (laid end to end as one flat vector) inside
// the flat range [begin, begin + len): the span piece_part holds elements [begin + at, ...) of
// the flat vector.
template <typename T, typename Fn>
void ForEachOverlap(const std::vector<std::span<T>>& pieces, int64_t begin, int64_t len, Fn&& fn) {
  const int64_t end = begin + len;
  int64_t off = 0;
  for (const std::span<T>& p : pieces) {
    const int64_t pb = off, pe = off + static_cast<int64_t>(p.size());
    off = pe;
    if (pe <= begin) continue;
    if (pb >= end) break;
    const int64_t lo = std::max(pb, begin), hi = std::min(pe, end);
    fn(p.subspan(lo - pb, hi - lo), lo - begin);
  }
}

}  // namespace distbelief
