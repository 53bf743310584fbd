#include "distbelief/ps/parameter_shard.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>

#include "absl/strings/numbers.h"
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

std::string FloatsToBytes(std::span<const float> v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

StatusOr<std::span<const float>> FloatsView(const std::string& bytes, int64_t expected, std::vector<float>* scratch) {
  if (bytes.size() % sizeof(float) != 0 ||
      (expected >= 0 && static_cast<int64_t>(bytes.size() / sizeof(float)) != expected) ||
      reinterpret_cast<uintptr_t>(bytes.data()) % alignof(float) != 0) {
    DB_RETURN_IF_ERROR(BytesToFloats(bytes, expected, scratch));
    return std::span<const float>(*scratch);
  }
  // The bytes were written by a copy (protobuf's parse, FloatsToBytes), which creates the floats.
  return std::span<const float>(reinterpret_cast<const float*>(bytes.data()), bytes.size() / sizeof(float));
}

Status BytesToFloats(const std::string& bytes, int64_t expected, std::vector<float>* out) {
  if (bytes.size() % sizeof(float) != 0)
    return absl::InvalidArgumentError("float payload of " + std::to_string(bytes.size()) +
                                      " bytes is not a whole number of floats");
  const int64_t n = static_cast<int64_t>(bytes.size() / sizeof(float));
  if (expected >= 0 && n != expected)
    return absl::InvalidArgumentError("payload holds " + std::to_string(n) + " floats, expected " +
                                      std::to_string(expected));
  out->resize(n);
  std::memcpy(out->data(), bytes.data(), bytes.size());
  return absl::OkStatus();
}

StatusOr<std::unique_ptr<ParameterShard>> ParameterShard::Create(const ShardOptions& options,
                                                                 std::span<const float> initial) {
  DB_ASSIGN_OR_RETURN(auto rule, MakeUpdateRule(options.optimizer));
  std::unique_ptr<ParameterShard> s(new ParameterShard(options, std::move(rule)));
  s->values_.assign(initial.begin(), initial.end());
  s->state_.assign(s->values_.size() * s->rule_->StatePerParam(), 0.0f);
  for (const KeyBlocks& r : options.norm_blocks)
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
                                        " does not hold a range of " +
                                        std::to_string(initial.size()) + " floats");
    auto st = c.tensors.find("state");
    if (!s->state_.empty() &&
        (st == c.tensors.end() || st->second.size() != static_cast<int64_t>(s->state_.size())))
      return absl::InvalidArgumentError("shard checkpoint " + options.checkpoint_path +
                                        " lacks optimizer state of the right size");
    s->values_.assign(v->second.data(), v->second.data() + v->second.size());
    if (!s->state_.empty()) s->state_.assign(st->second.data(), st->second.data() + st->second.size());
    if (!absl::SimpleAtoi(c.metadata["version"], &s->version_))
      return absl::DataLossError("shard checkpoint " + options.checkpoint_path + " has no valid version");
  }
  return s;
}

uint64_t ParameterShard::version() {
  std::lock_guard<std::mutex> lock(mu_);
  return version_;
}

Status ParameterShard::Pull(const rpc::PullRequest& req, rpc::PullReply* reply) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string* out = reply->mutable_values();  // a reused reply keeps its buffer: no allocation
  out->resize(values_.size() * sizeof(float));
  std::memcpy(out->data(), values_.data(), out->size());
  reply->set_version(version_);
  // The slowest replica heard from recently: bounded staleness waits only for live replicas.
  int64_t min_clock = -1;
  const auto now = std::chrono::steady_clock::now();
  for (const auto& [id, seen] : replicas_)
    if (now - seen.when <= o_.replica_silence && (min_clock < 0 || seen.clock < min_clock))
      min_clock = seen.clock;
  reply->set_min_replica_clock(min_clock);
  return absl::OkStatus();
}

Status ParameterShard::Push(const rpc::PushRequest& req, rpc::PushReply* reply) {
  thread_local std::vector<float> scratch;  // only for a payload whose storage is misaligned
  DB_ASSIGN_OR_RETURN(const std::span<const float> g, FloatsView(req.gradient(), static_cast<int64_t>(values_.size()), &scratch));
  if (const int64_t bad = FirstNonFinite(g); bad >= 0)
    return absl::InvalidArgumentError("shard " + std::to_string(o_.shard) + ": gradient holds NaN or Inf at index " +
                                      std::to_string(bad) + "; not applied");
  std::lock_guard<std::mutex> lock(mu_);
  if (req.accumulate()) {
    if (req.batch() != batch_)
      return absl::FailedPreconditionError("push for batch " + std::to_string(req.batch()) +
                                           " but the shard is on batch " + std::to_string(batch_));
    reply->set_version(version_);
    if (!portions_.insert(req.portion()).second) {
      reply->set_duplicate(true);  // a backup task lost the race: first result wins
      return absl::OkStatus();
    }
    std::vector<float>& acc = vectors_["acc"];
    acc.resize(values_.size(), 0.0f);
    for (size_t i = 0; i < g.size(); ++i) acc[i] += g[i];
    return absl::OkStatus();
  }
  reply->set_staleness(version_ >= req.based_on_version() ? version_ - req.based_on_version() : 0);
  rule_->Apply(values_, g, state_, static_cast<int64_t>(version_) + 1);
  ProjectLocked();
  ++version_;
  reply->set_version(version_);
  if (req.replica() >= 0)
    replicas_[req.replica()] = {req.replica_clock(), std::chrono::steady_clock::now()};
  if (o_.checkpoint_every > 0 && !o_.checkpoint_path.empty() && version_ % o_.checkpoint_every == 0)
    DB_RETURN_IF_ERROR(SaveLocked());
  return absl::OkStatus();
}

void ParameterShard::ProjectLocked() {
  const double max_sq = double(o_.max_block_norm) * o_.max_block_norm;
  for (const KeyBlocks& r : o_.norm_blocks)
    for (int64_t b = 0; b < r.count; ++b) {
      float* v = values_.data() + r.offset + b * r.block;
      double sq = 0.0;
      for (int64_t i = 0; i < r.block; ++i) sq += double(v[i]) * v[i];
      if (sq > max_sq) {
        const float scale = static_cast<float>(std::sqrt(max_sq / sq));
        for (int64_t i = 0; i < r.block; ++i) v[i] *= scale;
      }
    }
}

std::vector<float>* ParameterShard::FindVector(const std::string& name) {
  if (name == "x") return &values_;
  auto it = vectors_.find(name);
  return it == vectors_.end() ? nullptr : &it->second;
}

Status ParameterShard::VectorOp(const rpc::VectorOpRequest& req, rpc::VectorOpReply* reply) {
  std::lock_guard<std::mutex> lock(mu_);
  using Op = rpc::VectorOpRequest;
  const size_t n = values_.size();
  auto need = [&](const std::string& name) -> StatusOr<std::vector<float>*> {
    std::vector<float>* v = FindVector(name);
    if (!v) return absl::InvalidArgumentError("shard " + std::to_string(o_.shard) + ": no vector '" + name + "'");
    return v;
  };
  auto make = [&](const std::string& name) -> StatusOr<std::vector<float>*> {
    if (name.empty()) return absl::InvalidArgumentError("vector op without a target vector");
    std::vector<float>* v = FindVector(name);
    if (!v) v = &(vectors_[name] = std::vector<float>(n, 0.0f));
    return v;
  };
  reply->set_portions(static_cast<int64_t>(portions_.size()));
  switch (req.op()) {
    case Op::DOT: {
      DB_ASSIGN_OR_RETURN(auto* a, need(req.a()));
      DB_ASSIGN_OR_RETURN(auto* b, need(req.b()));
      double s = 0.0;
      for (size_t i = 0; i < n; ++i) s += double((*a)[i]) * (*b)[i];
      reply->set_value(s);
      return absl::OkStatus();
    }
    case Op::AXPY: {
      DB_ASSIGN_OR_RETURN(auto* a, need(req.a()));
      DB_ASSIGN_OR_RETURN(auto* b, make(req.b()));
      const float alpha = static_cast<float>(req.alpha());
      for (size_t i = 0; i < n; ++i) (*b)[i] += alpha * (*a)[i];
      return absl::OkStatus();
    }
    case Op::SCALE: {
      DB_ASSIGN_OR_RETURN(auto* a, need(req.a()));
      const float alpha = static_cast<float>(req.alpha());
      for (float& v : *a) v *= alpha;
      return absl::OkStatus();
    }
    case Op::COPY: {
      DB_ASSIGN_OR_RETURN(auto* a, need(req.a()));
      DB_ASSIGN_OR_RETURN(auto* b, make(req.b()));
      *b = *a;
      if (b == &values_) ++version_;  // replicas must refetch the parameters
      return absl::OkStatus();
    }
    case Op::ZERO: {
      DB_ASSIGN_OR_RETURN(auto* a, make(req.a()));
      std::fill(a->begin(), a->end(), 0.0f);
      return absl::OkStatus();
    }
    case Op::BEGIN_BATCH: {
      vectors_["acc"].assign(n, 0.0f);
      portions_.clear();
      batch_ = req.batch();
      reply->set_portions(0);
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError("unknown vector operation " + std::to_string(req.op()));
  }
}

Status ParameterShard::Info(rpc::ShardInfoReply* reply) {
  std::lock_guard<std::mutex> lock(mu_);
  reply->set_shard(o_.shard);
  reply->set_size(values_.size());
  reply->set_version(version_);
  reply->set_update_rule(rule_->Name());
  return absl::OkStatus();
}

Status ParameterShard::SaveCheckpoint() {
  std::lock_guard<std::mutex> lock(mu_);
  return SaveLocked();
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
  return WriteCheckpoint(o_.checkpoint_path, c);
}

}  // namespace distbelief
