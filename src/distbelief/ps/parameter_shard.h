// ParameterShard: one key range of the model's parameters, with its optimizer state, applying
// pushed gradients itself (Dean et al. 2012, §4.1: Downpour's Adagrad runs on the shards), and
// running Sandblaster's vector operations (§4.2) on numbered vectors of its range. Its API is the
// typed calls of ps/shard_api.h; transports serve it (transport/transport.h).
//
// A call that is refused (a wrong size, a NaN or Inf in a gradient, a stale batch) changes
// nothing and returns kInvalidArgument or kFailedPrecondition. A call that returns OK has taken
// effect exactly once. A checkpoint the shard fails to write (a full or read-only disk) never
// turns an applied push into an error, which a client would retry and so apply twice: it becomes
// the shard's sticky background error (background_error(), ShardInfo), as LevelDB keeps a failed
// background write, and later checkpoints are still attempted; a successful one clears it.
// Thread-safe: calls are serialized by an internal mutex. With a checkpoint interval, one
// background thread of the shard's own writes the checkpoints that time calls for; with a synced
// push log, another syncs it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "distbelief/base/status.h"
#include "distbelief/optim/projection.h"
#include "distbelief/optim/schedule.h"
#include "distbelief/optim/update_rules.h"
#include "distbelief/ps/push_log.h"
#include "distbelief/ps/shard_api.h"

namespace distbelief {

struct ShardOptions {
  int shard = 0;                         // index, for messages and checkpoints
  OptimizerOptions optimizer;            // the update rule applied to pushes (default SGD 0.01)
  // The rate of update number v (0-based) follows this schedule over `total_updates` updates
  // (0: the optimizer's constant rate).
  ScheduleOptions schedule;
  int64_t total_updates = 0;
  std::string checkpoint_path;           // "" = no checkpoints; else restored at Create if present
  int64_t checkpoint_every = 0;          // updates between checkpoints; 0 = only on request
  // Also checkpoint updates left unsaved this long (0: by count only), so a replica's last pushes
  // become durable when no more come (ParameterClient::Settle waits for that).
  std::chrono::milliseconds checkpoint_interval{0};
  // A write-ahead log of pushes (ps/push_log.h): each push is appended before it is applied and
  // acknowledged, the log is rewound after each checkpoint, and a shard created again applies
  // what the checkpoint lacks. Then a kill -9 of the shard process loses no acknowledged push,
  // with no help from the clients (who still keep copies until a checkpoint or a sync, against a
  // crash of the machine). Needs a checkpoint path. The log is PushLogPath(options); a shard
  // destroyed with everything in its checkpoint removes it.
  bool push_log = false;
  // push_log: fdatasync the log this often, so pushes survive a crash of the machine too; replies
  // then count a push durable once synced (clients keep it until then). 0: never sync.
  std::chrono::milliseconds push_log_sync{0};
  // push_log without sync: the folder of the log, memory that outlives the process (tmpfs).
  std::string push_log_dir = "/dev/shm";
  // "" = none; else the shard appends a line per applied push to
  // ledger_dir/shard-INDEX-INCARNATION.tsv: "start VERSION TIME" first (0, or what the
  // checkpoint held), then "CLIENT SEQUENCE VERSION TIME" (ids in hex, the version after
  // applying, Unix nanoseconds; " log" appended for a push applied again from the push log). tools/chaos checks them against the replicas' ledgers
  // (ParameterClient).
  std::string ledger_dir;
  std::chrono::milliseconds replica_silence{10000};  // replicas silent longer are not waited for
  // Blocks of this shard's range (offsets relative to its start) rescaled to L2 norm at most
  // norm_bound.max_norm after every applied update: a projection run where the parameters live,
  // such as the cat network's decoder-basis bound. The blocks must lie inside the range.
  NormBound norm_bound{{0, 1, 0}, 1.0f};
};

// Where a shard keeps its push log: synced, beside its checkpoint (CHECKPOINT.wal); else in
// push_log_dir, named after the checkpoint's absolute path (so two runs never share one).
std::string PushLogPath(const ShardOptions& o);

class ParameterShard {
 public:
  // A shard holding `initial` (its range), or, when options.checkpoint_path names a checkpoint of
  // a range of the same size, the checkpoint's values, optimizer state and version.
  // kDataLoss for a corrupt checkpoint; kInvalidArgument for a bad update rule or size mismatch.
  static StatusOr<std::unique_ptr<ParameterShard>> Create(const ShardOptions& options,
                                                          std::span<const float> initial);
  ~ParameterShard();  // stops the checkpoint thread (without a last checkpoint)

  // Copies the range into `out` (pieces adding up to size()).
  Status Pull(int32_t replica, FloatPieces out, PullReply* reply);
  // Applies `gradient` (size() floats) with the update rule, then the norm bound.
  Status Push(const PushMeta& meta, std::span<const float> gradient, PushReply* reply);
  // Adds `gradient` to the accumulator for (batch, portion) if that portion is new in the
  // current batch; kFailedPrecondition for another batch.
  Status Accumulate(const PortionKey& key, std::span<const float> gradient, AccumulateReply* reply);
  Status RunVectorOp(const VectorOp& op, VectorOpReply* reply);
  ShardInfo Info();

  // Writes the checkpoint now (atomically). kFailedPrecondition without a checkpoint path.
  Status SaveCheckpoint();
  // The last checkpoint failure since the last success (OK if none).
  Status background_error();
  int64_t size() const { return size_; }  // fixed at Create: safe to read without the lock
  uint64_t version();

 private:
  ParameterShard(const ShardOptions& o, std::unique_ptr<UpdateRule> rule)
      : o_(o), rule_(std::move(rule)) {}
  Status SaveLocked();
  // A checkpoint by count or by time, after an update: its failure is kept, not returned.
  void SaveInBackgroundLocked();
  // Applies a push that passed every check (a new id, a finite gradient of the right size);
  // fills the reply's version and staleness.
  void ApplyLocked(const PushMeta& meta, std::span<const float> g, PushReply* reply, bool from_log);
  void SyncPushLog();  // the push log's sync thread
  void TimedCheckpoints();  // the checkpoint thread
  void Ledger(const std::string& line);
  // kInvalidArgument unless g holds exactly the range's floats, all finite.
  Status CheckGradient(std::span<const float> g, const char* what) const;
  std::vector<float>* FindVector(VectorId id);

  ShardOptions o_;
  std::unique_ptr<UpdateRule> rule_;
  std::mutex mu_;
  int64_t size_ = 0;
  std::vector<float> values_;  // vector kParamsVector
  std::vector<float> state_;   // optimizer state, StatePerParam() * size
  uint64_t version_ = 0;
  std::map<VectorId, std::vector<float>> vectors_;  // Sandblaster's other vectors
  int64_t batch_ = -1;
  std::set<int64_t> portions_;  // accumulated in the current batch
  struct ReplicaSeen {
    int64_t clock;
    std::chrono::steady_clock::time_point when;
  };
  std::map<int32_t, ReplicaSeen> replicas_;
  // Push ids: each client's last applied sequence and its reply (see PushMeta). At most
  // kMaxPushClients entries; the one least recently used goes first.
  struct LastPush {
    uint64_t sequence = 0;
    PushReply reply;
    uint64_t used = 0;  // version_ when it was last used
  };
  static constexpr size_t kMaxPushClients = 4096;
  std::map<uint64_t, LastPush> last_push_;
  uint64_t duplicate_pushes_ = 0;
  uint64_t incarnation_ = 0;      // random, never 0
  uint64_t durable_version_ = 0;  // the version the last written (or restored) checkpoint holds
  std::unique_ptr<PushLog> push_log_;
  uint64_t lineage_ = 0;          // push_log: the log's id, kept in the checkpoints
  uint64_t synced_version_ = 0;   // push_log_sync: every update up to this one is synced
  // What survives a crash of the machine: a checkpoint, or a synced push log. (An unsynced log
  // survives the process only, so clients still keep their copies until a checkpoint.)
  uint64_t DurableLocked() const {
    if (o_.checkpoint_path.empty()) return version_;
    return push_log_ && o_.push_log_sync.count() > 0 ? std::max(durable_version_, synced_version_) : durable_version_;
  }
  Status background_error_;
  std::chrono::steady_clock::time_point first_unsaved_{};  // the oldest update not in a checkpoint
  int ledger_fd_ = -1;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread saver_;
  std::thread syncer_;
};

// Index of the first NaN or Inf in v, or -1. Fast path: a vectorized sum of v * 0, which is NaN
// exactly when some element is not finite.
int64_t FirstNonFinite(std::span<const float> v);

// The number of floats in `pieces`.
int64_t TotalSize(FloatPieces pieces);

}  // namespace distbelief
