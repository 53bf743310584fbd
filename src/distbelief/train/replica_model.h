// The one interface between the engine and a workload. A workload says how to make a model
// replica (ReplicaModel) and how long to train (Job); the engine's drivers (train/local.h,
// train/downpour.h, train/sandblaster.h) do everything else: data parallelism, fetching and
// pushing, the update rule, schedules, norm bounds, metrics, checkpoints. No workload writes a
// training loop. A user's own workload is one file (examples/csv_classifier.cc shows one).
//
//   B = a replica's batch; params are the model's Param tensors (value and grad, same shape).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "distbelief/base/status.h"
#include "distbelief/io/metrics.h"
#include "distbelief/nn/layer.h"
#include "distbelief/optim/projection.h"

namespace distbelief {

// The loss of one step: the value the gradient is of, and optionally its named parts (the cat
// network's reconstruction and sparsity terms), in the order of Job::loss_terms.
struct StepLoss {
  double total = 0.0;
  std::vector<double> terms;
};

// One model replica as the drivers see it. A replica is driven by one thread at a time (the
// model may run its own threads inside ComputeGradient, as model partitions do); every replica
// has its own ReplicaModel.
class ReplicaModel {
 public:
  virtual ~ReplicaModel() = default;

  // Parameter groups. Each group lives on its own shards, so that a model partition talks only to
  // the shards of its own parameters (Dean et al. 2012, fig. 2). Most models have one group.
  virtual int num_groups() const { return 1; }
  // The parameters of `group`, in an order that is the same in every process for the same
  // config (key ranges of the flat vector then mean the same thing everywhere). The tensors stay
  // where they are for the model's lifetime: drivers pull into and push from them in place.
  virtual std::vector<Param*> params(int group) = 0;
  // The loss of this replica's batch for `step` (its own share of the data: a dataset's batches
  // follow the step, a stream of random samples such as crops draws the next), with the mean
  // gradient written into the params' grads (overwritten, not added). An error (a dead model partition, unreadable data) stops the replica, or rebuilds it
  // where the driver allows restarts.
  virtual StatusOr<StepLoss> ComputeGradient(int64_t step) = 0;
  // Blocks of group g's flat vector to keep at bounded L2 norm after every update (blocks.count
  // 0: none). The local driver projects them; under Downpour the shards holding them do.
  virtual NormBound norm_bound(int group) { return NormBound{{0, 1, 0}, 1.0f}; }

  // Sandblaster (full-batch L-BFGS) needs a fixed set of examples in a fixed order, the same in
  // every process. 0: this model has none, and Sandblaster refuses it.
  virtual int64_t num_examples() const { return 0; }
  // The mean loss over examples [begin, end) of that order, the mean gradient in the grads.
  virtual StatusOr<double> ComputeGradientOn(int64_t begin, int64_t end) {
    return absl::UnimplementedError("this model has no fixed example set");
  }
};

// What a driver trains.
struct Job {
  std::string name = "model";  // for log lines
  // Replica `replica` of `replicas`: its model and its share of the data. Replica 0 of every
  // process holds the same initial parameters (same seed), which the shards start from.
  std::function<StatusOr<std::unique_ptr<ReplicaModel>>(int replica, int replicas)> make_replica;
  int64_t steps = 0;              // steps of all replicas together (each takes ceil(steps / R))
  int64_t examples_per_step = 1;  // for rates and counts
  std::vector<std::string> loss_terms;  // names of StepLoss::terms in metrics
  // Local driver: evaluate (below) and checkpoint every this many steps (an epoch); 0 = at the
  // end only.
  int64_t steps_per_epoch = 0;
  // Metrics of the model on held-out data, written to metrics.jsonl (optional).
  std::function<StatusOr<Metrics>(ReplicaModel* model)> evaluate;
  bool write_checkpoint = true;   // run_dir/checkpoint.safetensors at the end (and by epoch)
  bool show_progress = true;      // the progress line on stderr
};

// Per-step loss history: the means over the first and last fraction of steps (in the order the
// steps finished). Thread-compatible.
class LossLog {
 public:
  void Add(const StepLoss& l) { losses_.push_back(l); }
  int64_t size() const { return static_cast<int64_t>(losses_.size()); }
  // Mean over the first (or last) max(1, fraction * size) steps; zeros if empty.
  StepLoss FirstMean(double fraction = 0.1) const { return Mean(fraction, true); }
  StepLoss LastMean(double fraction = 0.1) const { return Mean(fraction, false); }

 private:
  StepLoss Mean(double fraction, bool first) const;
  std::vector<StepLoss> losses_;
};

// What a run did. `model` holds the final parameters (for Downpour and Sandblaster, pulled from
// the shards) for the workload to evaluate, save and report.
struct RunResult {
  std::unique_ptr<ReplicaModel> model;
  int64_t steps = 0;     // steps finished by all replicas (Sandblaster: L-BFGS iterations)
  int64_t examples = 0;
  double seconds = 0.0;      // wall time, without observer checks
  double cpu_seconds = 0.0;  // process CPU time over the same span
  StepLoss first_loss, last_loss;  // means over the first and last 10% of steps
  bool diverged = false;           // the loss stopped being finite (local: the run stopped there)
  bool stopped_early = false;      // an observer ended the run
  // Downpour.
  double mean_staleness = 0.0;  // shard versions between a gradient's fetch and its application
  uint64_t max_staleness = 0;
  int64_t max_clock_lead = -1;  // the most a replica led the slowest live one at a fetch (-1: unknown)
  int64_t replicas_failed = 0, replica_restarts = 0;
  std::vector<std::vector<uint64_t>> shard_versions;  // [group][shard]: updates applied
  std::vector<std::string> shard_errors;              // shards' background errors at the end
  // Sandblaster.
  int64_t evaluations = 0, backup_tasks = 0;
  std::vector<double> batch_seconds;
};

// Watches a run from outside its loop (benchmarks stop at a target loss; the scaling lab shows
// its own progress). Methods run on the driver's threads; keep them short.
class TrainObserver {
 public:
  virtual ~TrainObserver() = default;
  // Local driver: after every step.
  virtual void OnStep(int64_t step, const StepLoss& loss) {}
  // Downpour: how often Check runs (seconds; 0: never).
  virtual double check_interval_seconds() const { return 0.0; }
  // Downpour: runs with every replica parked at a step boundary and off the run's clock (its
  // time is left out of RunResult::seconds); `model` holds the current parameters. True ends the
  // run.
  virtual bool Check(ReplicaModel* model) { return false; }
};

// Copies between a model's parameter values and a flat vector (params in order, end to end).
void CopyParamsToFlat(const std::vector<Param*>& params, std::span<float> flat);
void CopyFlatToParams(std::span<const float> flat, const std::vector<Param*>& params);
int64_t CountParams(const std::vector<Param*>& params);
// The values (or grads) of params as pieces of one flat vector.
std::vector<std::span<float>> ValuePieces(const std::vector<Param*>& params);
std::vector<std::span<const float>> GradPieces(const std::vector<Param*>& params);

}  // namespace distbelief
