#include "distbelief/ps/parameter_shard.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "distbelief/base/logging.h"
#include "distbelief/base/random.h"
#include "distbelief/io/checkpoint.h"

namespace distbelief {

int64_t FirstNonFinite(std::span<const float> v) {
  float probe = 0.0f;
#pragma omp simd reduction(+ : probe)
  for (size_t i = 0; i < v.size(); ++i) probe += v[i] * 0.0f;
  if (probe == 0.0f) return -1;
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i])) return static_cast<int64_t>(i);
  return -1;
}

int64_t TotalSize(FloatPieces pieces) {
  int64_t n = 0;
  for (const auto& p : pieces) n += static_cast<int64_t>(p.size());
  return n;
}

std::string PushLogPath(const ShardOptions& o) {
  if (o.push_log_sync.count() > 0 || o.push_log_dir.empty()) return o.checkpoint_path + ".wal";
  std::error_code ec;
  const std::filesystem::path abs = std::filesystem::absolute(o.checkpoint_path, ec);
  const std::string key = ec ? o.checkpoint_path : abs.lexically_normal().string();
  return absl::StrCat(o.push_log_dir, "/distbelief-", abs.filename().string(), "-",
                      absl::Hex(Crc32(key), absl::kZeroPad8), ".wal");
}

StatusOr<std::unique_ptr<ParameterShard>> ParameterShard::Create(const ShardOptions& options,
                                                                 std::span<const float> initial) {
  DB_ASSIGN_OR_RETURN(auto rule, MakeUpdateRule(options.optimizer));
  std::unique_ptr<ParameterShard> s(new ParameterShard(options, std::move(rule)));
  s->incarnation_ = RandomNonZeroId();
  s->values_.assign(initial.begin(), initial.end());
  s->size_ = static_cast<int64_t>(initial.size());
  s->state_.assign(s->values_.size() * s->rule_->StatePerParam(), 0.0f);
  const KeyBlocks& r = options.norm_bound.blocks;
  if (r.offset < 0 || r.block < 1 || r.count < 0 || r.offset + r.block * r.count > static_cast<int64_t>(initial.size()))
    return absl::InvalidArgumentError("shard " + std::to_string(options.shard) + ": norm blocks [" +
                                      std::to_string(r.offset) + ", +" + std::to_string(r.block) + " x " +
                                      std::to_string(r.count) + ") do not fit its range of " +
                                      std::to_string(initial.size()));
  if (!options.checkpoint_path.empty() && std::filesystem::exists(options.checkpoint_path)) {
    DB_ASSIGN_OR_RETURN(Checkpoint c, ReadCheckpoint(options.checkpoint_path));
    auto v = c.tensors.find("values");
    if (v == c.tensors.end() || v->second.size() != static_cast<int64_t>(initial.size()))
      return absl::InvalidArgumentError("shard checkpoint " + options.checkpoint_path +
                                        " does not hold a range of " + std::to_string(initial.size()) + " floats");
    auto st = c.tensors.find("state");
    if (!s->state_.empty() &&
        (st == c.tensors.end() || st->second.size() != static_cast<int64_t>(s->state_.size())))
      return absl::InvalidArgumentError("shard checkpoint " + options.checkpoint_path +
                                        " lacks optimizer state of the right size");
    s->values_.assign(v->second.data(), v->second.data() + v->second.size());
    if (!s->state_.empty()) s->state_.assign(st->second.data(), st->second.data() + st->second.size());
    if (!absl::SimpleAtoi(c.metadata["version"], &s->version_))
      return absl::DataLossError("shard checkpoint " + options.checkpoint_path + " has no valid version");
    for (absl::string_view entry : absl::StrSplit(c.metadata["push_ids"], ' ', absl::SkipEmpty())) {
      std::vector<absl::string_view> f = absl::StrSplit(entry, ':');
      LastPush last;
      uint64_t client = 0;
      if (f.size() != 4 || !absl::SimpleAtoi(f[0], &client) || client == 0 || !absl::SimpleAtoi(f[1], &last.sequence) ||
          !absl::SimpleAtoi(f[2], &last.reply.version) || !absl::SimpleAtoi(f[3], &last.reply.staleness) ||
          last.reply.version > s->version_)
        return absl::DataLossError("shard checkpoint " + options.checkpoint_path + " has a malformed push id '" +
                                   std::string(entry) + "'");
      last.used = last.reply.version;
      s->last_push_[client] = last;
    }
    s->durable_version_ = s->version_;
    (void)absl::SimpleHexAtoi(c.metadata["push_log_lineage"], &s->lineage_);
  }
  if (options.push_log && options.checkpoint_path.empty())
    return absl::InvalidArgumentError("shard " + std::to_string(options.shard) +
                                      ": a push log needs a checkpoint path (it lives beside the checkpoint)");
  if (!options.ledger_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options.ledger_dir, ec);  // an error shows in open()
    const std::string path = absl::StrCat(options.ledger_dir, "/shard-", options.shard, "-",
                                          absl::Hex(s->incarnation_, absl::kZeroPad16), ".tsv");
    s->ledger_fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (s->ledger_fd_ < 0) return absl::UnavailableError("shard ledger " + path + ": " + std::strerror(errno));
    s->Ledger(absl::StrCat("start ", s->version_, " ", absl::ToUnixNanos(absl::Now()), "\n"));
  }
  if (options.push_log) {
    // What the checkpoint lacks, applied again in order; the ledger records it as applied now.
    const uint64_t held = s->version_;
    int64_t replayed = 0;
    ParameterShard* p = s.get();
    if (s->lineage_ == 0) {
      // A new lineage (a fresh shard, or a checkpoint written without a log) is in a checkpoint
      // before any record of it: a restart finds it and so trusts exactly this log's records.
      s->lineage_ = RandomNonZeroId();
      DB_RETURN_IF_ERROR(s->SaveLocked());
    }
    const std::string path = PushLogPath(options);
    std::error_code ec;  // the folder may not exist yet; an error shows in Open
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    DB_ASSIGN_OR_RETURN(s->push_log_, PushLog::Open(path, s->size_, options.push_log_sync.count() > 0, s->lineage_, held,
                                                    std::min<int64_t>(options.checkpoint_every, 4096),
                                                    [&](const PushLog::Record& r) -> Status {
      if (r.version != p->version_ + 1)
        return absl::DataLossError(absl::StrCat("push log ", path, ": update ", r.version,
                                                " follows version ", p->version_,
                                                ": the log does not continue the checkpoint"));
      if (const int64_t bad = FirstNonFinite(r.gradient); bad >= 0)
        return absl::DataLossError("push log " + path + ": a gradient holds NaN or Inf");
      PushReply reply;
      p->ApplyLocked(r.meta, r.gradient, &reply, /*from_log=*/true);
      ++replayed;
      return absl::OkStatus();
    }));
    if (replayed > 0)
      LOG_INFO << "shard " << options.shard << ": applied " << replayed << " push(es) from its log after the "
               << "checkpoint's version " << held << "; now at version " << s->version_;
    s->synced_version_ = held;  // what the log holds beyond the checkpoint may not be on the disk
    if (options.push_log_sync.count() > 0) s->syncer_ = std::thread([p] { p->SyncPushLog(); });
  }
  if (options.checkpoint_interval.count() > 0 && !options.checkpoint_path.empty())
    s->saver_ = std::thread([p = s.get()] { p->TimedCheckpoints(); });
  return s;
}

ParameterShard::~ParameterShard() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (saver_.joinable()) saver_.join();
  if (syncer_.joinable()) syncer_.join();
  if (push_log_ && version_ == durable_version_) {  // the checkpoint holds it all: the log is spent
    push_log_.reset();
    std::error_code ec;
    std::filesystem::remove(PushLogPath(o_), ec);
  }
  if (ledger_fd_ >= 0) ::close(ledger_fd_);
}

// One write per line: whole lines reach the file even if the process is killed (kill -9 loses
// nothing the kernel has; a machine crash may).
void ParameterShard::Ledger(const std::string& line) {
  if (ledger_fd_ >= 0 && ::write(ledger_fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
    LOG_WARN << "shard " << o_.shard << ": cannot write its ledger: " << std::strerror(errno);
}

void ParameterShard::TimedCheckpoints() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    wake_.wait_for(lock, o_.checkpoint_interval / 4);
    if (stopping_) return;
    if (version_ > durable_version_ && std::chrono::steady_clock::now() - first_unsaved_ >= o_.checkpoint_interval)
      SaveInBackgroundLocked();
  }
}

void ParameterShard::SyncPushLog() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    wake_.wait_for(lock, o_.push_log_sync);
    if (stopping_) return;
    const uint64_t v = version_;
    lock.unlock();  // pushes go on while the disk syncs
    const Status synced = push_log_->Sync();
    lock.lock();
    if (synced.ok()) {
      synced_version_ = std::max(synced_version_, v);
    } else if (background_error_.ok()) {
      LOG_WARN << "shard " << o_.shard << ": " << synced.message();
      background_error_ = synced;
    }
  }
}

void ParameterShard::SaveInBackgroundLocked() {
  // The update stands whatever happens to the checkpoint: see the header.
  if (Status saved = SaveLocked(); !saved.ok()) {
    if (background_error_.ok())
      LOG_WARN << "shard " << o_.shard << ": checkpoint failed at version " << version_ << ": " << saved.message()
               << " (training goes on; the error is kept until a checkpoint succeeds)";
    background_error_ = saved;
  } else {
    background_error_ = absl::OkStatus();
  }
}

uint64_t ParameterShard::version() {
  std::lock_guard<std::mutex> lock(mu_);
  return version_;
}

Status ParameterShard::background_error() {
  std::lock_guard<std::mutex> lock(mu_);
  return background_error_;
}

Status ParameterShard::Pull(int32_t replica, FloatPieces out, PullReply* reply) {
  if (TotalSize(out) != size())
    return absl::InvalidArgumentError("pull into " + std::to_string(TotalSize(out)) + " floats; shard " +
                                      std::to_string(o_.shard) + " holds " + std::to_string(size()));
  std::lock_guard<std::mutex> lock(mu_);
  const float* src = values_.data();
  for (const std::span<float>& p : out) {
    std::memcpy(p.data(), src, p.size() * sizeof(float));
    src += p.size();
  }
  reply->version = version_;
  // The slowest replica heard from recently: bounded staleness waits only for live replicas.
  int64_t min_clock = -1;
  const auto now = std::chrono::steady_clock::now();
  for (const auto& [id, seen] : replicas_)
    if (now - seen.when <= o_.replica_silence && (min_clock < 0 || seen.clock < min_clock)) min_clock = seen.clock;
  reply->min_replica_clock = min_clock;
  return absl::OkStatus();
}

Status ParameterShard::CheckGradient(std::span<const float> g, const char* what) const {
  if (static_cast<int64_t>(g.size()) != size())
    return absl::InvalidArgumentError(std::string(what) + " of " + std::to_string(g.size()) + " floats; shard " +
                                      std::to_string(o_.shard) + " holds " + std::to_string(size()));
  if (const int64_t bad = FirstNonFinite(g); bad >= 0)
    return absl::InvalidArgumentError("shard " + std::to_string(o_.shard) + ": gradient holds NaN or Inf at index " +
                                      std::to_string(bad) + "; not applied");
  return absl::OkStatus();
}

Status ParameterShard::Push(const PushMeta& meta, std::span<const float> g, PushReply* reply) {
  DB_RETURN_IF_ERROR(CheckGradient(g, "push"));
  std::lock_guard<std::mutex> lock(mu_);
  if (meta.incarnation != 0 && meta.incarnation != incarnation_)
    return absl::AbortedError(absl::StrCat("shard ", o_.shard, ": ", kShardRestarted, " (its checkpoint holds version ",
                                           durable_version_, "); push again what it does not hold"));
  if (meta.client != 0) {
    auto it = last_push_.find(meta.client);
    if (it != last_push_.end() && meta.sequence <= it->second.sequence) {
      ++duplicate_pushes_;
      *reply = it->second.reply;
      reply->duplicate = true;
      reply->incarnation = incarnation_;
      reply->durable_version = DurableLocked();
      if (meta.sequence < it->second.sequence) reply->version = version_;  // older than the last: no reply kept
      return absl::OkStatus();
    }
  }
  // Logged before applied: a failed write leaves the push unapplied and the client retries it.
  if (push_log_) DB_RETURN_IF_ERROR(push_log_->Append(meta, version_ + 1, g));
  ApplyLocked(meta, g, reply, /*from_log=*/false);
  if (o_.checkpoint_every > 0 && !o_.checkpoint_path.empty() && version_ % o_.checkpoint_every == 0)
    SaveInBackgroundLocked();
  reply->incarnation = incarnation_;
  reply->durable_version = DurableLocked();
  return absl::OkStatus();
}

void ParameterShard::ApplyLocked(const PushMeta& meta, std::span<const float> g, PushReply* reply, bool from_log) {
  reply->duplicate = false;
  reply->staleness = version_ >= meta.based_on_version ? version_ - meta.based_on_version : 0;
  if (o_.total_updates > 0)
    rule_->SetLearningRate(ScheduledRate(o_.schedule, o_.optimizer.learning_rate, static_cast<int64_t>(version_),
                                         o_.total_updates));
  rule_->Apply(values_, g, state_, static_cast<int64_t>(version_) + 1);
  ProjectBlockNorms(values_, o_.norm_bound);
  if (version_ == durable_version_) first_unsaved_ = std::chrono::steady_clock::now();
  ++version_;
  reply->version = version_;
  if (meta.client != 0) {
    auto it = last_push_.find(meta.client);
    if (it == last_push_.end() && last_push_.size() >= kMaxPushClients) {
      auto oldest = std::min_element(last_push_.begin(), last_push_.end(),
                                     [](const auto& a, const auto& b) { return a.second.used < b.second.used; });
      last_push_.erase(oldest);
    }
    last_push_[meta.client] = {meta.sequence, *reply, version_};
  }
  if (ledger_fd_ >= 0)
    Ledger(absl::StrCat(absl::Hex(meta.client), " ", meta.sequence, " ", version_, " ", absl::ToUnixNanos(absl::Now()),
                        from_log ? " log\n" : "\n"));
  if (meta.replica >= 0) replicas_[meta.replica] = {meta.replica_clock, std::chrono::steady_clock::now()};
}

Status ParameterShard::Accumulate(const PortionKey& key, std::span<const float> g, AccumulateReply* reply) {
  DB_RETURN_IF_ERROR(CheckGradient(g, "accumulate"));
  std::lock_guard<std::mutex> lock(mu_);
  if (key.batch != batch_)
    return absl::FailedPreconditionError("portion of batch " + std::to_string(key.batch) + " but shard " +
                                         std::to_string(o_.shard) + " is on batch " + std::to_string(batch_));
  reply->version = version_;
  reply->duplicate = !portions_.insert(key.portion).second;  // a backup task lost the race: first wins
  if (reply->duplicate) return absl::OkStatus();
  std::vector<float>& acc = vectors_[kAccumulatorVector];
  acc.resize(values_.size(), 0.0f);
  for (size_t i = 0; i < g.size(); ++i) acc[i] += g[i];
  return absl::OkStatus();
}

std::vector<float>* ParameterShard::FindVector(VectorId id) {
  if (id == kParamsVector) return &values_;
  auto it = vectors_.find(id);
  return it == vectors_.end() ? nullptr : &it->second;
}

Status ParameterShard::RunVectorOp(const VectorOp& req, VectorOpReply* reply) {
  std::lock_guard<std::mutex> lock(mu_);
  const size_t n = values_.size();
  auto need = [&](VectorId id) -> StatusOr<std::vector<float>*> {
    std::vector<float>* v = FindVector(id);
    if (!v) return absl::InvalidArgumentError("shard " + std::to_string(o_.shard) + ": no vector " + std::to_string(id));
    return v;
  };
  auto make = [&](VectorId id) -> StatusOr<std::vector<float>*> {
    if (id < 0) return absl::InvalidArgumentError("vector id " + std::to_string(id) + " is negative");
    std::vector<float>* v = FindVector(id);
    if (!v) v = &(vectors_[id] = std::vector<float>(n, 0.0f));
    return v;
  };
  reply->portions = static_cast<int64_t>(portions_.size());
  switch (req.op) {
    case VectorOpKind::kDot: {
      DB_ASSIGN_OR_RETURN(auto* a, need(req.a));
      DB_ASSIGN_OR_RETURN(auto* b, need(req.b));
      double s = 0.0;
      for (size_t i = 0; i < n; ++i) s += double((*a)[i]) * (*b)[i];
      reply->value = s;
      return absl::OkStatus();
    }
    case VectorOpKind::kAxpy: {
      DB_ASSIGN_OR_RETURN(auto* a, need(req.a));
      DB_ASSIGN_OR_RETURN(auto* b, make(req.b));
      const float alpha = static_cast<float>(req.alpha);
      for (size_t i = 0; i < n; ++i) (*b)[i] += alpha * (*a)[i];
      if (b == &values_) ++version_;  // replicas must refetch the parameters
      return absl::OkStatus();
    }
    case VectorOpKind::kScale: {
      DB_ASSIGN_OR_RETURN(auto* a, need(req.a));
      const float alpha = static_cast<float>(req.alpha);
      for (float& v : *a) v *= alpha;
      if (a == &values_) ++version_;
      return absl::OkStatus();
    }
    case VectorOpKind::kCopy: {
      DB_ASSIGN_OR_RETURN(auto* a, need(req.a));
      DB_ASSIGN_OR_RETURN(auto* b, make(req.b));
      *b = *a;
      if (b == &values_) ++version_;
      return absl::OkStatus();
    }
    case VectorOpKind::kZero: {
      DB_ASSIGN_OR_RETURN(auto* a, make(req.a));
      std::fill(a->begin(), a->end(), 0.0f);
      if (a == &values_) ++version_;
      return absl::OkStatus();
    }
    case VectorOpKind::kBeginBatch: {
      vectors_[kAccumulatorVector].assign(n, 0.0f);
      portions_.clear();
      batch_ = req.batch;
      reply->portions = 0;
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError("unknown vector operation " + std::to_string(static_cast<int>(req.op)));
}

ShardInfo ParameterShard::Info() {
  std::lock_guard<std::mutex> lock(mu_);
  ShardInfo info;
  info.shard = o_.shard;
  info.size = values_.size();
  info.version = version_;
  info.update_rule = rule_->Name();
  info.background_error = background_error_.ok() ? "" : std::string(background_error_.message());
  info.duplicate_pushes = duplicate_pushes_;
  info.incarnation = incarnation_;
  info.durable_version = DurableLocked();
  return info;
}

Status ParameterShard::SaveCheckpoint() {
  std::lock_guard<std::mutex> lock(mu_);
  Status s = SaveLocked();
  background_error_ = s.code() == absl::StatusCode::kFailedPrecondition ? background_error_ : s;
  return s;
}

Status ParameterShard::SaveLocked() {
  if (o_.checkpoint_path.empty()) return absl::FailedPreconditionError("shard has no checkpoint path");
  Checkpoint c;
  Tensor v({static_cast<int64_t>(values_.size())});
  std::memcpy(v.data(), values_.data(), values_.size() * sizeof(float));
  c.tensors.emplace("values", std::move(v));
  if (!state_.empty()) {
    Tensor st({static_cast<int64_t>(state_.size())});
    std::memcpy(st.data(), state_.data(), state_.size() * sizeof(float));
    c.tensors.emplace("state", std::move(st));
  }
  c.metadata["version"] = std::to_string(version_);
  c.metadata["shard"] = std::to_string(o_.shard);
  c.metadata["update_rule"] = rule_->Name();
  std::string ids;  // "client:sequence:version:staleness" per client, space-separated
  for (const auto& [client, last] : last_push_)
    ids += absl::StrCat(ids.empty() ? "" : " ", client, ":", last.sequence, ":", last.reply.version, ":",
                        last.reply.staleness);
  c.metadata["push_ids"] = ids;
  if (lineage_ != 0) c.metadata["push_log_lineage"] = absl::StrCat(absl::Hex(lineage_));
  DB_RETURN_IF_ERROR(WriteCheckpoint(o_.checkpoint_path, c));
  durable_version_ = version_;
  if (push_log_) push_log_->Rewind();  // the checkpoint holds everything logged
  return absl::OkStatus();
}

}  // namespace distbelief
