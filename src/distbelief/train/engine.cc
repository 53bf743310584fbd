#include "distbelief/train/engine.h"

#include "distbelief/train/downpour.h"
#include "distbelief/train/local.h"
#include "distbelief/train/sandblaster.h"

namespace distbelief {

StatusOr<RunResult> RunJob(const EngineOptions& e, const Job& job, TrainObserver* observer) {
  if (!e.train.resume.empty() && e.distributed.mode != Mode::kLocal)
    return absl::InvalidArgumentError("--resume is for single-process runs; distributed shards resume from their own "
                                      "checkpoints (distributed.shard_checkpoint_dir)");
  switch (e.distributed.mode) {
    case Mode::kLocal: return TrainLocal(e.train, e.optimizer, job, observer);
    case Mode::kDownpour: return RunDownpour(e, job, observer);
    case Mode::kSandblaster: return RunSandblaster(e, job);
  }
  return absl::InvalidArgumentError("unknown mode");
}

Status Workload::Train(const EngineOptions& e) {
  DB_ASSIGN_OR_RETURN(const Job job, MakeJob(e));
  DB_ASSIGN_OR_RETURN(RunResult result, RunJob(e, job));
  return Report(e, &result);
}

}  // namespace distbelief
