// The engine's front door: runs a Job with the driver its options name (no [distributed]: the
// local driver; mode = "downpour" or "sandblaster"), and the interface the command line sees a
// workload through. A workload is a thin adapter: its own options and data, a ReplicaModel, and
// a report of what was learned.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "distbelief/base/status.h"
#include "distbelief/train/options.h"
#include "distbelief/train/replica_model.h"

namespace distbelief {

// Runs `job` with the driver e.distributed.mode names.
StatusOr<RunResult> RunJob(const EngineOptions& e, const Job& job, TrainObserver* observer = nullptr);

// `distbelief eval` of a checkpoint: its path, and flags a workload may take (face-neuron's
// --faces, --nonfaces, --csv).
struct EvalRequest {
  std::string checkpoint;
  std::map<std::string, std::string> flags;
};

// A workload as the command line runs it. It owns its typed options (parsed from its config
// section) and its data.
class Workload {
 public:
  virtual ~Workload() = default;
  // The workload's one job (train, launch, and the process roles run it).
  // kUnimplemented for a workload that trains in phases (the cat network's stages).
  virtual StatusOr<Job> MakeJob(const EngineOptions& e) = 0;
  // After the job: evaluates result.model, saves what it keeps, and prints what it learned.
  virtual Status Report(const EngineOptions& e, RunResult* result) = 0;
  // `distbelief train`: by default RunJob(MakeJob()) then Report.
  virtual Status Train(const EngineOptions& e);
  // `distbelief eval`.
  virtual Status Evaluate(const EngineOptions& e, const EvalRequest& request) {
    return absl::UnimplementedError("this workload has no eval");
  }
};

}  // namespace distbelief
