// The local driver: one replica in this process, the loop a newcomer reads first. Per step:
// the model computes its batch's loss and gradient, the driver clips (optimizer.clip_norm),
// schedules the rate, applies the update rule to every parameter, projects the model's norm
// bounds, and now and then writes metrics and an atomic checkpoint (parameters, optimizer state,
// step). With train.resume it continues from such a checkpoint; with train.deterministic and a
// fixed thread count a resumed run is bit-identical to an uninterrupted one.
// Uses the process's thread pool; not thread-safe.
#pragma once

#include "distbelief/base/status.h"
#include "distbelief/optim/update_rules.h"
#include "distbelief/train/options.h"
#include "distbelief/train/replica_model.h"

namespace distbelief {

// Trains job.make_replica(0, 1) for job.steps steps (train.max_steps caps them). `stop_at` > 0
// stops after that many steps in all, as an interrupted run would (tests check resuming).
// A loss that stops being finite ends the run with result.diverged. Errors: the model's, a bad
// resume checkpoint (kDataLoss / kInvalidArgument: nothing loaded), an unwritable run_dir.
StatusOr<RunResult> TrainLocal(const TrainOptions& train, const OptimizerOptions& optimizer, const Job& job,
                               TrainObserver* observer = nullptr, int64_t stop_at = 0);

}  // namespace distbelief
