// The typed contract between a replica and one parameter shard (Dean et al. 2012, §4: a shard
// owns one key range of the model's flat parameter vector). ParameterShard answers these calls in
// its own process; ShardChannel is how a caller reaches a shard anywhere: transport/ implements it
// in process, over gRPC and over the tensor socket. Nothing here knows about protobuf or sockets.
//
// Floats are the shard's whole range, fp32. Versions count the updates a shard has applied.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>

#include "distbelief/base/status.h"

namespace distbelief {

using Millis = std::chrono::milliseconds;

// A shard's range laid out in consecutive pieces whose sizes add up to the range (a model's
// parameter tensors cut at the shard's boundaries), so a pull lands in place without a copy.
using FloatPieces = std::span<const std::span<float>>;

struct PullReply {
  uint64_t version = 0;
  int64_t min_replica_clock = -1;  // the slowest live replica's clock seen by the shard (-1: none)
};

// What travels with a pushed gradient. A push with an id (client != 0) is applied at most once:
// the shard remembers each client's last applied sequence number, and a push whose sequence is
// not above it (a retry after a lost reply, a duplicated packet, a late copy) is acknowledged as
// a duplicate without being applied. A client therefore numbers its pushes 1, 2, 3, ... and sends
// them one after another, each (with its retries) before the next; a restarted client takes a new
// client id. The table survives in the shard's checkpoint.
//
// Durability: a shard restarted from its checkpoint has lost the pushes it applied after it.
// Each shard process has a random incarnation, and replies carry it and the durable version (the
// version its last checkpoint holds). A client keeps each push the shard's checkpoints do not yet
// cover and names the incarnation it expects; a restarted shard refuses such a push with
// kAborted (kShardRestarted in the message), and the client pushes what it kept again (the ids
// make the ones the checkpoint holds duplicates) before going on. So every acknowledged push ends
// up applied once, also across a kill -9 of the shard, while the pushing client lives.
inline constexpr char kShardRestarted[] = "shard restarted";
struct PushMeta {
  uint64_t based_on_version = 0;  // the version of the parameters the gradient was computed from
  int32_t replica = -1;           // -1 for a coordinator
  int64_t replica_clock = 0;      // the replica's step count after this push
  uint64_t client = 0;            // the pushing client's random id; 0 = no id (applied every time)
  uint64_t sequence = 0;          // the client's push number, from 1
  uint64_t incarnation = 0;       // the shard process the client expects; 0 = any
};
struct PushReply {
  uint64_t version = 0;    // after the update (for a duplicate: after the original's update)
  uint64_t staleness = 0;  // versions applied between based_on_version and this update
  bool duplicate = false;  // this push id was applied before; nothing was applied now
  uint64_t incarnation = 0;      // the shard process that answered
  uint64_t durable_version = 0;  // the shard's last checkpoint holds every update up to this one
};

// Sandblaster (§4.2): a work portion's gradient is added to the shard's accumulator, once per
// (batch, portion): a backup task that finishes second changes nothing.
struct PortionKey {
  int64_t batch = 0, portion = 0;
  int32_t replica = -1;
};
struct AccumulateReply {
  uint64_t version = 0;
  bool duplicate = false;  // this portion had already been accumulated
};

// Sandblaster's coordinator never holds the parameters: it has the shards run vector operations
// on vectors of their ranges, named by number, and gets scalars back.
using VectorId = int32_t;
inline constexpr VectorId kParamsVector = 0;       // the parameters themselves
inline constexpr VectorId kAccumulatorVector = 1;  // the current batch's accumulated gradient
// Ids from here on are the coordinator's to use; a vector is created (zero) on first write.
inline constexpr VectorId kFirstScratchVector = 2;
enum class VectorOpKind : int32_t {
  kDot = 0,         // returns sum_i a_i b_i over the range
  kAxpy = 1,        // b += alpha a
  kScale = 2,       // a *= alpha
  kCopy = 3,        // b = a (b = the parameters counts as an update: the version advances)
  kZero = 4,        // a = 0
  kBeginBatch = 5,  // the accumulator = 0, no portion counted yet, the batch id becomes `batch`
};
struct VectorOp {
  VectorOpKind op = VectorOpKind::kDot;
  VectorId a = 0, b = 0;
  double alpha = 0.0;
  int64_t batch = 0;
};
struct VectorOpReply {
  double value = 0.0;    // kDot: the partial sum over this shard's range
  int64_t portions = 0;  // portions accumulated in the current batch
};

struct ShardInfo {
  int32_t shard = 0;
  uint64_t size = 0;  // floats in the range
  uint64_t version = 0;
  std::string update_rule;
  // The shard's sticky background error (a checkpoint it could not write), "" if none.
  std::string background_error;
  uint64_t duplicate_pushes = 0;  // pushes acknowledged as duplicates (not applied) since start
  uint64_t incarnation = 0;       // random per shard process
  uint64_t durable_version = 0;   // as in PushReply
};

// One shard as a caller reaches it. Every call takes a timeout and returns the shard's status or
// the way's: kUnavailable (unreachable: retry), kDeadlineExceeded, kUnauthenticated (wrong or no
// secret). Thread-safe.
class ShardChannel {
 public:
  virtual ~ShardChannel() = default;
  // Writes the range into `out` (pieces adding up to the range's size).
  virtual Status Pull(int32_t replica, FloatPieces out, PullReply* reply, Millis timeout) = 0;
  virtual Status Push(const PushMeta& meta, std::span<const float> gradient, PushReply* reply, Millis timeout) = 0;
  virtual Status Accumulate(const PortionKey& key, std::span<const float> gradient, AccumulateReply* reply,
                            Millis timeout) = 0;
  virtual Status RunVectorOp(const VectorOp& op, VectorOpReply* reply, Millis timeout) = 0;
  virtual Status Info(ShardInfo* info, Millis timeout) = 0;
};

}  // namespace distbelief
