// ParameterShard: one key range of the model's parameters, with its optimizer state, applying
// pushed gradients itself (Dean et al. 2012, §4.1: Downpour's Adagrad runs on the shards), and
// running Sandblaster's vector operations (§4.2) on named vectors of its range.
//
// Every entry point validates its request and returns a Status: a wrong size, a NaN or Inf in a
// gradient, an unknown vector or a stale batch is refused with nothing changed.
// Thread-safe: calls are serialized by an internal mutex.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "distbelief/base/status.h"
#include "distbelief/optim/update_rules.h"
#include "distbelief/ps/shard_map.h"
#include "distbelief/distbelief.pb.h"

namespace distbelief {

struct ShardOptions {
  int shard = 0;                         // index, for messages and checkpoints
  OptimizerOptions optimizer;            // the update rule applied to pushes (default SGD 0.01)
  std::string checkpoint_path;           // "" = no checkpoints; else restored at Create if present
  int64_t checkpoint_every = 0;          // updates between checkpoints; 0 = only on request
  std::chrono::milliseconds replica_silence{10000};  // replicas silent longer are not waited for
  // Blocks of this shard's range (offsets relative to its start) rescaled to L2 norm at most
  // max_block_norm after every applied update: a projection run where the parameters live, such
  // as the cat network's decoder-basis bound. Each block must lie wholly inside the range.
  std::vector<KeyBlocks> norm_blocks;
  float max_block_norm = 1.0f;
};

class ParameterShard {
 public:
  // A shard holding `initial` (its range), or, when options.checkpoint_path names a checkpoint of
  // a range of the same size, the checkpoint's values, optimizer state and version.
  // kDataLoss for a corrupt checkpoint; kInvalidArgument for a bad update rule or size mismatch.
  static StatusOr<std::unique_ptr<ParameterShard>> Create(const ShardOptions& options,
                                                          std::span<const float> initial);

  Status Pull(const rpc::PullRequest& req, rpc::PullReply* reply);
  Status Push(const rpc::PushRequest& req, rpc::PushReply* reply);
  Status VectorOp(const rpc::VectorOpRequest& req, rpc::VectorOpReply* reply);
  Status Info(rpc::ShardInfoReply* reply);

  // Writes the checkpoint now (atomically). kFailedPrecondition without a checkpoint path.
  Status SaveCheckpoint();
  int64_t size() const { return static_cast<int64_t>(values_.size()); }
  uint64_t version();

 private:
  ParameterShard(const ShardOptions& o, std::unique_ptr<UpdateRule> rule)
      : o_(o), rule_(std::move(rule)) {}
  Status SaveLocked();
  void ProjectLocked();
  std::vector<float>* FindVector(const std::string& name);

  ShardOptions o_;
  std::unique_ptr<UpdateRule> rule_;
  std::mutex mu_;
  std::vector<float> values_;  // "x"
  std::vector<float> state_;   // optimizer state, StatePerParam() * size
  uint64_t version_ = 0;
  std::map<std::string, std::vector<float>> vectors_;  // Sandblaster's named vectors
  int64_t batch_ = -1;
  std::set<int64_t> portions_;  // accumulated in the current batch
  struct ReplicaSeen {
    int64_t clock;
    std::chrono::steady_clock::time_point when;
  };
  std::map<int32_t, ReplicaSeen> replicas_;
};

// Index of the first NaN or Inf in v, or -1. Fast path: a vectorized sum of v * 0, which is NaN
// exactly when some element is not finite.
int64_t FirstNonFinite(std::span<const float> v);

// Floats <-> the bytes fields of the wire protocol (little-endian fp32, as on every host we run).
std::string FloatsToBytes(std::span<const float> v);
// kInvalidArgument if `bytes` does not hold exactly `expected` floats (pass -1 to accept any).
Status BytesToFloats(const std::string& bytes, int64_t expected, std::vector<float>* out);
// The same check, without a copy when it can: a view of `bytes` as floats (valid while `bytes`
// lives and is unchanged), or, if its storage is not float-aligned, of a copy kept in *scratch.
StatusOr<std::span<const float>> FloatsView(const std::string& bytes, int64_t expected, std::vector<float>* scratch);

}  // namespace distbelief
