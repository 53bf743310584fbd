#include "distbelief/train/checkpointing.h"

#include <filesystem>

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "distbelief/io/checkpoint.h"

namespace distbelief {
namespace {

constexpr char kFormat[] = "distbelief-checkpoint-1";

bool AllFinite(const Tensor& t) {
  for (int64_t i = 0; i < t.size(); ++i)
    if (!std::isfinite(t[i])) return false;
  return true;
}

}  // namespace

Status SaveModelCheckpoint(const std::string& path, const std::vector<Param*>& params,
                           const std::vector<Tensor>* state, const ModelCheckpointInfo& info) {
  Checkpoint c;
  for (size_t i = 0; i < params.size(); ++i) {
    c.tensors.emplace(params[i]->name, params[i]->value);
    if (state && (*state)[i].size() > 0) c.tensors.emplace("optimizer/" + params[i]->name, (*state)[i]);
  }
  c.metadata["step"] = std::to_string(info.step);
  c.metadata["config"] = info.config;
  if (!info.optimizer.empty()) c.metadata["optimizer"] = info.optimizer;
  c.metadata["format"] = kFormat;
  return WriteCheckpoint(path, c);
}

StatusOr<ModelCheckpointInfo> LoadModelCheckpoint(const std::string& path, const std::vector<Param*>& params,
                                                  std::vector<Tensor>* state) {
  DB_ASSIGN_OR_RETURN(Checkpoint c, ReadCheckpoint(path));
  ModelCheckpointInfo info;
  auto step = c.metadata.find("step");
  if (step == c.metadata.end()) return absl::DataLossError(path + ": metadata has no step");
  if (!absl::SimpleAtoi(step->second, &info.step) || info.step < 0)
    return absl::DataLossError(path + ": step '" + step->second + "' is not a step count");
  info.config = c.metadata["config"];
  info.optimizer = c.metadata["optimizer"];
  // Check everything before changing anything, so a bad file never half-loads.
  for (size_t i = 0; i < params.size(); ++i) {
    auto it = c.tensors.find(params[i]->name);
    if (it == c.tensors.end()) return absl::InvalidArgumentError(path + ": no tensor for parameter " + params[i]->name);
    if (it->second.shape() != params[i]->value.shape())
      return absl::InvalidArgumentError(path + ": " + params[i]->name + " has shape " + it->second.ShapeString() +
                                        ", the model wants " + params[i]->value.ShapeString());
    if (!AllFinite(it->second)) return absl::DataLossError(path + ": " + params[i]->name + " holds NaN or Inf");
    if (state && (*state)[i].size() > 0) {
      auto st = c.tensors.find("optimizer/" + params[i]->name);
      if (st != c.tensors.end() && st->second.size() != (*state)[i].size())
        return absl::InvalidArgumentError(path + ": optimizer state for " + params[i]->name + " has the wrong size");
      if (st != c.tensors.end() && !AllFinite(st->second))
        return absl::DataLossError(path + ": optimizer state for " + params[i]->name + " holds NaN or Inf");
    }
  }
  // Copied into the tensors in place: spans a driver holds stay valid.
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& v = c.tensors.at(params[i]->name);
    std::copy(v.data(), v.data() + v.size(), params[i]->value.data());
    if (!state || (*state)[i].size() == 0) continue;
    auto st = c.tensors.find("optimizer/" + params[i]->name);
    if (st != c.tensors.end()) std::copy(st->second.data(), st->second.data() + st->second.size(), (*state)[i].data());
  }
  return info;
}

std::string RunCheckpointPath(const std::string& run_dir) { return run_dir + "/checkpoint.safetensors"; }
std::string ShardCheckpointDir(const std::string& run_dir) { return run_dir + "/shards"; }

Status CheckRunDirFree(const std::string& run_dir, bool resuming, bool overwrite) {
  if (resuming || overwrite) return absl::OkStatus();
  std::string path = RunCheckpointPath(run_dir);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec) && !ec) {
    // A launch that ended early leaves only its shards' checkpoints.
    path = ShardCheckpointDir(run_dir);
    if (!std::filesystem::exists(path, ec) && !ec) return absl::OkStatus();
  }
  return absl::FailedPreconditionError("train.run_dir " + run_dir + " already holds a run (" + path +
                                       "): pass --resume CHECKPOINT to continue it, --overwrite to replace it, "
                                       "or set another train.run_dir");
}

}  // namespace distbelief
