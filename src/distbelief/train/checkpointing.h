// A model's checkpoint: its parameters by name, optionally the optimizer state of each
// (`optimizer/NAME`), the step, and the config it was trained with, in the safetensors format of
// io/checkpoint.h (atomic writes, checksummed). The local driver writes and resumes from these;
// every driver writes one at the end; `distbelief eval` reads them.
#pragma once

#include <string>
#include <vector>

#include "distbelief/base/status.h"
#include "distbelief/nn/layer.h"
#include "distbelief/tensor/tensor.h"

namespace distbelief {

struct ModelCheckpointInfo {
  int64_t step = 0;
  std::string config;      // the TOML the run was trained with
  std::string optimizer;   // the update rule's name, "" without optimizer state
};

// Writes params (and, when `state` is given, state[i] as optimizer/<params[i]->name>).
Status SaveModelCheckpoint(const std::string& path, const std::vector<Param*>& params,
                           const std::vector<Tensor>* state, const ModelCheckpointInfo& info);

// Loads a checkpoint into params (and state, when given and present). Everything is checked
// before anything changes: a missing tensor or one of the wrong shape (kInvalidArgument naming
// it), a value that is NaN or Inf, a missing or negative step (kDataLoss), a corrupt file
// (kDataLoss). Optimizer state absent from the file (a distributed run keeps it on the shards)
// leaves *state alone.
StatusOr<ModelCheckpointInfo> LoadModelCheckpoint(const std::string& path, const std::vector<Param*>& params,
                                                  std::vector<Tensor>* state = nullptr);

// Where a run's final checkpoint goes: run_dir/checkpoint.safetensors.
std::string RunCheckpointPath(const std::string& run_dir);
// Where `launch` keeps its shards' checkpoints unless distributed.shard_checkpoint_dir says
// otherwise: run_dir/shards. A new launch clears it.
std::string ShardCheckpointDir(const std::string& run_dir);

// A run may write into `run_dir` only if no earlier run's checkpoint (nor a launch's shard
// checkpoints) is there, unless it resumes
// (continues that run) or is told to overwrite: kFailedPrecondition naming the folder and both
// flags otherwise, before anything is written.
Status CheckRunDirFree(const std::string& run_dir, bool resuming, bool overwrite);

}  // namespace distbelief
